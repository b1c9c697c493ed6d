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


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
#: The folders that hold one module per device type, named after it.
PER_TYPE_FOLDERS = (
    "smartcity/devices",
    "simulators",
    "edge/drivers/simulated",
    "api/kpis",
    "grafana/panels",
)
#: Folders with a module for the types whose hardware speaks that protocol only.
PROTOCOL_PER_TYPE_FOLDERS = ("edge/drivers/modbus",)


def adding_a_type() -> str:
    """docs/protocol.md's "Adding a device type" section."""
    text = (ROOT / "docs/protocol.md").read_text()
    return text.split("## Adding a device type", 1)[1].split("\n## ", 1)[0]


def test_every_device_type_has_its_module_in_every_per_type_folder() -> None:
    for folder in PER_TYPE_FOLDERS:
        for name in DEVICE_TYPES:
            assert (ROOT / folder / f"{name}.py").is_file(), f"no {folder}/{name}.py"


def test_no_folder_has_a_module_per_type_the_docs_do_not_name() -> None:
    # a component that grew a module per type would be a place the steps forget
    section = adding_a_type()
    folders = {
        str(p.parent.relative_to(ROOT))
        for name in DEVICE_TYPES
        for p in ROOT.glob(f"*/**/{name}.py")
        if ".venv" not in p.parts and "tests" not in p.parts
    }
    assert set(PER_TYPE_FOLDERS) <= folders
    assert folders - set(PER_TYPE_FOLDERS) <= set(PROTOCOL_PER_TYPE_FOLDERS), folders
    for folder in PER_TYPE_FOLDERS:
        assert f"`{folder}/airquality.py`" in section, f"docs/protocol.md omits {folder}"
    for folder in PROTOCOL_PER_TYPE_FOLDERS:
        assert f"`{folder}/`" in section, f"docs/protocol.md omits {folder}"


def test_the_steps_for_a_new_type_name_files_that_exist() -> None:
    import re

    named = set(re.findall(r"`([\w./-]+\.(?:py|yaml|yml|json|md))`", adding_a_type()))
    assert len(named) >= 15, named
    for path in named:
        assert (ROOT / path).is_file(), f"docs/protocol.md names {path}, which does not exist"


def test_every_device_type_has_a_default_fleet_size_and_only_old_types_a_flag() -> None:
    from simulators.settings import FleetSettings

    for name, sim in SIMULATORS.items():
        assert sim.fleet_size > 0, name
        if sim.count_flag is not None:
            assert sim.count_flag in FleetSettings.model_fields, (name, sim.count_flag)
    flags = {s.count_flag for s in SIMULATORS.values()} - {None}
    assert flags == {"streetlights", "bins", "chargers"}  # no new type gets a flag of its own


def test_every_device_type_has_a_live_service_with_its_board_and_an_open_dataset() -> None:
    from api.catalogue import load

    for name, panels in PANELS.items():
        services = [s for s in load().services if name in s.device_types]
        assert services, name
        assert panels.board_uid in {d.uid for s in services for d in s.dashboards}, name
        own = {d for s in services for d in s.datasets} - {"devices"}
        assert own, f"no open dataset of {name}'s own in its service"


def test_every_device_type_has_a_golden_reading() -> None:
    import json

    for name in DEVICE_TYPES:
        cases = [p.parent for p in (ROOT / "tests/cases").glob(f"{name}_*/expected.lp")]
        readings = [
            c for c in cases if (c / "topic").read_text().endswith("/telemetry")
            and json.loads((c / "payload.json").read_text())["readings"]
        ]  # fmt: skip
        assert readings, f"no golden telemetry case tests/cases/{name}_*/"


def test_no_component_special_cases_a_type_outside_its_modules() -> None:
    # a type's behaviour lives in its own modules; elsewhere a component goes through the
    # registries (DEVICE_TYPES, SIMULATORS, DRIVERS, KPI_MODULES, PANELS) and the type's hooks
    import ast

    modules = {f"smartcity.devices.{name}" for name in DEVICE_TYPES}
    classes = {t.__name__ for t in DEVICE_TYPES.values()}
    # the API's --bin-threshold, a per-type setting from before, defaults to the waste type's
    # constant
    allowed = {"api/settings.py"}
    # OCPP is the EV chargers' protocol: its gateway and the chargers simulated over it speak
    # for that one type by definition
    for_one_type = ("edge/ocpp/", "simulators/ocpp.py")
    for component in ("api", "ingest", "edge", "grafana", "simulators", "stack", "smartcity"):
        for path in (ROOT / component).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if path.stem in DEVICE_TYPES or path.name == "__init__.py" or rel in allowed:
                continue
            if rel.startswith(for_one_type):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    assert node.module not in modules, f"{rel} imports {node.module}"
                elif isinstance(node, ast.Name):
                    assert node.id not in classes, f"{rel} names {node.id}"


def test_every_alert_kind_has_its_message_and_every_dataset_its_id() -> None:
    from typing import get_args

    from api.alerts import MESSAGES
    from api.kpis import KPI_MODULES
    from api.opendata.registry import DATASETS
    from api.routers.opendata import DatasetId
    from api.schemas.alerts import AlertKind

    assert set(get_args(AlertKind)) <= set(MESSAGES)
    for name, module in KPI_MODULES.items():
        assert set(module.alert_messages) <= set(get_args(AlertKind)), name
        assert module.datasets, f"{name} has no open dataset"
    assert get_args(DatasetId) == tuple(DATASETS)
