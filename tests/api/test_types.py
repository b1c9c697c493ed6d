"""The names the API spells out as ``Literal`` types are the ones its data defines."""

from __future__ import annotations

from typing import get_args

from api.opendata.registry import DATASETS
from api.routers.opendata import DatasetId
from api.schemas.common import ZoneName
from smartcity.city import ZONE_NAMES


def test_zone_names_are_the_citys_zones_in_order() -> None:
    assert get_args(ZoneName) == ZONE_NAMES


def test_dataset_ids_are_the_datasets_in_order() -> None:
    assert get_args(DatasetId) == tuple(DATASETS)
