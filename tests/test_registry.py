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
