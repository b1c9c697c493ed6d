"""Every open dataset by id: each device type's own (its API module's ``datasets``), then the
registry's device positions."""

from __future__ import annotations

from api.kpis import KPI_MODULES
from api.opendata.datasets import DEVICES, Dataset

DATASETS: dict[str, Dataset] = {
    d.id: d for d in (*(d for k in KPI_MODULES.values() for d in k.datasets), DEVICES)
}
