"""Every device type is known to every component: adding one without the rest fails here."""

from __future__ import annotations

from grafana.panels import PANELS
from simulators import SIMULATORS
from smartcity.devices import DEVICE_TYPES


def test_every_device_type_has_a_simulator() -> None:
    assert set(SIMULATORS) == set(DEVICE_TYPES)
    for name, sim in SIMULATORS.items():
        assert sim.device_type is DEVICE_TYPES[name]


def test_every_device_type_has_dashboard_panels() -> None:
    assert set(PANELS) == set(DEVICE_TYPES)
    for name, panels in PANELS.items():
        assert panels.device is DEVICE_TYPES[name]
        assert panels.kpis()
        assert panels.sections()
        assert panels.maintenance()
        assert panels.alerts()


def test_every_device_type_declares_units_and_ranges_for_its_numbers() -> None:
    for device in DEVICE_TYPES.values():
        for name, info in device.reading_model.model_fields.items():
            if info.annotation is float:
                assert isinstance(info.json_schema_extra, dict), f"{device.name}.{name} has no unit"
                assert "unit" in info.json_schema_extra


def test_every_device_type_has_a_simulated_edge_driver_running_its_simulator() -> None:
    from edge.drivers import DRIVERS

    simulated = DRIVERS["simulated"]
    assert set(simulated) == set(DEVICE_TYPES)
    for name, driver in simulated.items():
        assert driver.device_type is DEVICE_TYPES[name]
        assert driver.sim is SIMULATORS[name]  # type: ignore[attr-defined]


def test_every_device_type_declares_its_commands() -> None:
    from typing import get_args

    from smartcity.devices.base import Command

    for device in DEVICE_TYPES.values():
        inner = get_args(device.command_model)[0]
        for command in get_args(inner) or (inner,):
            assert issubclass(command, Command), f"{device.name}: {command}"
            assert "action" in command.model_fields


def test_every_device_type_has_api_kpis_named_in_the_catalogue() -> None:
    from api.catalogue import load
    from api.kpis import KPI_MODULES

    assert set(KPI_MODULES) == set(DEVICE_TYPES)
    catalogue = load()
    for name, module in KPI_MODULES.items():
        assert module.device is DEVICE_TYPES[name]
        live = [s for s in catalogue.services if name in s.device_types]
        assert live, f"no service in the catalogue runs on {name}"
        named = {k.id for s in live for k in s.kpis}
        assert set(module.kpi_ids) <= named, f"{name} computes KPIs the catalogue does not name"


def test_catalogue_dashboards_are_boards_we_ship() -> None:
    from pathlib import Path

    from api.catalogue import load

    boards = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
    shipped = {p.stem for p in boards.rglob("*.json")}
    named = {d.uid for s in load().services for d in s.dashboards}
    assert named
    assert named <= shipped, named - shipped


def test_the_api_accepts_exactly_the_device_types_and_their_series_fields() -> None:
    # the API spells these names out as Literal types for the type checker; they must stay the
    # contract's, in its order (the OpenAPI enums list them so)
    from typing import get_args

    from api.routers.readings import SeriesField, numeric_fields
    from api.schemas.common import DeviceTypeName

    assert get_args(DeviceTypeName) == tuple(DEVICE_TYPES)
    fields = {f for t in DEVICE_TYPES.values() for f in numeric_fields(t)}
    assert get_args(SeriesField) == tuple(sorted(fields))
