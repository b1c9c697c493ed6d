"""Every command has --help; settings come from flags, SMARTCITY_* variables or a config file."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.settings import IngestSettings
from smartcity.settings import SettingsError, add_arguments, load
from stack.cli import build_parser

from .conftest import AuthBroker


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_expected_subcommands_exist() -> None:
    assert {"up", "simulate", "ingest"} <= set(subcommands())


@pytest.mark.parametrize("command", [None, *subcommands()])
def test_help(command: str | None) -> None:
    args = [sys.executable, "-m", "smartcity", *([command] if command else []), "--help"]
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage: smartcity" in out.stdout


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, IngestSettings)
    return p.parse_args(argv)


def test_flag_beats_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "smartcity.toml"
    cfg.write_text(
        'influx_db = "from_file"\nmqtt_url = "mqtt://file:1"\n[ingest]\nbatch_size = 11\n'
    )
    s = load(IngestSettings, parse("--config", str(cfg)))
    assert (s.influx_db, s.mqtt_url, s.batch_size) == ("from_file", "mqtt://file:1", 11)
    monkeypatch.setenv("SMARTCITY_INFLUX_DB", "from_env")
    monkeypatch.setenv("SMARTCITY_INGEST_BATCH_SIZE", "22")
    s = load(IngestSettings, parse("--config", str(cfg)))
    assert (s.influx_db, s.batch_size) == ("from_env", 22)
    s = load(
        IngestSettings,
        parse("--config", str(cfg), "--influx-db", "from_flag", "--batch-size", "33"),
    )
    assert (s.influx_db, s.batch_size) == ("from_flag", 33)


def test_variables_match_in_any_case_shared_ones_by_their_own_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("smartcity_ingest_batch_size", "44")  # any case
    monkeypatch.setenv("SMARTCITY_INGEST_MQTT_URL", "mqtt://prefixed:1")
    assert load(IngestSettings, parse()).mqtt_url == "mqtt://prefixed:1"
    monkeypatch.setenv("SMARTCITY_MQTT_URL", "mqtt://shared:1")  # the shared name comes first
    s = load(IngestSettings, parse())
    assert (s.batch_size, s.mqtt_url) == (44, "mqtt://shared:1")
    # and the settings built directly (tests, benches) read the same variables
    assert IngestSettings().mqtt_url == "mqtt://shared:1"


def test_a_table_from_a_variable_is_json_over_the_file_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.settings import EdgeSettings

    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        '[edge]\ndevice_type = "streetlight"\ndevice_id = "sl-1"\ndriver = "simulated"\n'
        "[edge.driver_options]\nread_delay = 2.0\n"
    )
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, EdgeSettings)
    assert load(EdgeSettings, p.parse_args(["--config", str(cfg)])).driver_options == {
        "read_delay": 2.0
    }
    monkeypatch.setenv("SMARTCITY_EDGE_DRIVER_OPTIONS", '{"read_delay": 1}')
    s = load(EdgeSettings, p.parse_args(["--config", str(cfg)]))
    assert s.driver_options == {"read_delay": 1}
    monkeypatch.setenv("SMARTCITY_EDGE_DRIVER_OPTIONS", "{not json")
    with pytest.raises(SettingsError, match="SMARTCITY_EDGE_DRIVER_OPTIONS: not valid JSON"):
        load(EdgeSettings, p.parse_args(["--config", str(cfg)]))


def test_bad_settings_fail_at_start_with_the_name_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCITY_MQTT_URL", "http://wrong-scheme:1883")
    with pytest.raises(SettingsError, match="mqtt_url"):
        load(IngestSettings, parse())
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", "ingest", "--batch-size", "0"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "batch_size" in out.stderr
    assert "Traceback" not in out.stderr
    # a ready file would only be written after subscribing: its folder is checked at start
    with pytest.raises(SettingsError, match=r"ready_file.*does not exist"):
        load(IngestSettings, parse("--ready-file", "/nonexistent-folder/ready"))


def test_unreachable_broker_says_what_to_do() -> None:
    from stack.servers import free_port

    out = subprocess.run(
        [sys.executable, "-m", "smartcity", "simulate", "--mqtt-url", f"mqtt://127.0.0.1:{free_port()}",
         "--messages", "1"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "cannot reach the MQTT broker" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("login", ["simulator:wrong@", ""])
def test_a_refused_login_says_so_not_that_the_broker_is_down(
    auth_broker: AuthBroker, login: str
) -> None:
    broker = auth_broker.broker
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", "simulate", "--messages", "1",
         "--mqtt-url", f"mqtt://{login}127.0.0.1:{broker.port}"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "refused the login" in out.stderr, out.stderr
    assert ("'simulator'" if login else "without a user name") in out.stderr
    assert "--mqtt-url" in out.stderr
    assert "cannot reach" not in out.stderr
    assert "wrong" not in out.stderr  # never the password
    assert "Traceback" not in out.stderr


def test_a_misspelled_config_key_is_an_error_naming_the_nearest(tmp_path: Path) -> None:
    cfg = tmp_path / "smartcity.toml"
    cfg.write_text('mqtt_urll = "mqtt://broker.example:1883"\n')
    with pytest.raises(SettingsError, match=r"'mqtt_urll' \(did you mean 'mqtt_url'\?\)"):
        load(IngestSettings, parse("--config", str(cfg)))
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", "simulate", "--config", str(cfg), "--messages", "1"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "unknown top-level key 'mqtt_urll'" in out.stderr
    assert "Traceback" not in out.stderr
    # a component's own setting at the top level says where it belongs
    cfg.write_text("batch_size = 10\n")
    with pytest.raises(SettingsError, match=r"'batch_size' .* put it under \[ingest\]"):
        load(IngestSettings, parse("--config", str(cfg)))
    # a typo in a section names the nearest key too; shared keys of other components are fine
    cfg.write_text('influx_url = "http://influx.example:8086"\n[ingest]\nbatch_sise = 10\n')
    with pytest.raises(SettingsError, match=r"batch_sise: .* \(did you mean 'batch_size'\?\)"):
        load(IngestSettings, parse("--config", str(cfg)))


@pytest.mark.parametrize("command", ["edge run", "simulate", "up", "api"])
def test_help_shows_real_defaults_only(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", *command.split(), "--help"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Undefined" not in out.stdout


@pytest.mark.parametrize("command", ["simulate", "edge run", "grafana push", "api"])
def test_a_wrong_flag_prints_the_subcommands_usage(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smartcity", *command.split(), "--no-such-flag"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.startswith(f"usage: smartcity {command} "), out.stderr
    assert f"smartcity {command}: error: unrecognized arguments: --no-such-flag" in out.stderr


@pytest.mark.parametrize(
    ("command", "package", "extra"),
    [
        ("grafana build --check", "grafana_foundation_sdk", "grafana"),
        ("up", "sqlalchemy", "server"),
    ],
)
def test_a_missing_extra_is_named_with_the_command_that_installs_it(
    tmp_path: Path, command: str, package: str, extra: str
) -> None:
    """As on a machine installed without that extra (./scripts/run installs [server] only)."""
    from stack.servers import free_port

    argv = [*command.split(), "--no-install", "--data-dir", str(tmp_path / "var"),
            "--mqtt-url", f"mqtt://127.0.0.1:{free_port()}", "--influx-url",
            f"http://127.0.0.1:{free_port()}", "--api-port", str(free_port()),
            "--ingest-metrics-port", "0"] if command == "up" else command.split()  # fmt: skip
    hide = f"import sys; sys.modules[{package!r}] = None"  # the import then fails as if absent
    run = f"{hide}; from stack.cli import main; sys.exit(main({argv!r}))"
    out = subprocess.run(
        [sys.executable, "-c", run], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 1, out.stderr
    assert f"pip install 'smartcity-cremona[{extra}]'" in out.stderr
    assert f".venv/bin/pip install -e '.[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr


def fleet_of(*argv: str, config: Path | None = None) -> dict[str, int]:
    from simulators.settings import SimulateSettings

    p = argparse.ArgumentParser()
    p.add_argument("--config")
    add_arguments(p, SimulateSettings)
    extra = ("--config", str(config)) if config else ()
    return load(SimulateSettings, p.parse_args([*argv, *extra])).counts()


def test_the_fleet_is_one_option_keyed_by_type_over_each_types_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulators import SIMULATORS

    defaults = {t: s.fleet_size for t, s in SIMULATORS.items()}
    assert fleet_of() == defaults
    assert "airquality" in fleet_of()  # the default fleet has every type
    assert fleet_of("--fleet", "airquality=20,streetlight=200") == {
        **defaults,
        "airquality": 20,
        "streetlight": 200,
    }
    assert "wastebin" not in fleet_of("--fleet", "wastebin=0")
    # today's per-type flags keep working, and --fleet wins over them
    assert fleet_of("--streetlights", "7", "--bins", "0")["streetlight"] == 7
    assert fleet_of("--streetlights", "7", "--fleet", "streetlight=9")["streetlight"] == 9
    # a variable: the same text, or JSON; a config file: a string or a table
    monkeypatch.setenv("SMARTCITY_SIMULATE_FLEET", "evcharger=3")
    assert fleet_of()["evcharger"] == 3
    monkeypatch.setenv("SMARTCITY_SIMULATE_FLEET", '{"evcharger": 4}')
    assert fleet_of()["evcharger"] == 4
    monkeypatch.delenv("SMARTCITY_SIMULATE_FLEET")
    cfg = tmp_path / "smartcity.toml"
    cfg.write_text("[simulate]\nfleet = {airquality = 5}\n")
    assert fleet_of(config=cfg)["airquality"] == 5
    cfg.write_text('[simulate]\nfleet = "airquality=6"\n')
    assert fleet_of(config=cfg)["airquality"] == 6


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("toaster=3", "unknown device type 'toaster'; the types are streetlight"),
        ("airquality", "'airquality' is not TYPE=COUNT"),
        ("airquality=many", "fleet.airquality"),
        ("airquality=-1", "a count from 0"),
    ],
)
def test_a_wrong_fleet_is_refused_saying_how(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        fleet_of("--fleet", value)


def test_smartcity_up_takes_the_same_fleet_option() -> None:
    from stack.up import UpSettings

    settings = UpSettings(fleet="airquality=10", streetlights=3)
    assert settings.counts()["airquality"] == 10
    assert settings.counts()["streetlight"] == 3
    assert "airquality=10" in settings.fleet_text().split(",")
