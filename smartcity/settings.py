"""Settings for every component, from one place: flag, then ``SMARTCITY_*`` variable, then file.

Each component declares one pydantic-settings model; its fields become command-line flags
(``batch_size`` -> ``--batch-size``), environment variables (``SMARTCITY_INGEST_BATCH_SIZE``, or
``SMARTCITY_MQTT_URL`` for the connection settings every component shares) and keys of a TOML
config file (top-level keys are shared, ``[ingest]`` holds the ingester's own). Settings are
validated at start-up, before anything connects, so a typo fails fast with the name to fix.
"""

from __future__ import annotations

import argparse
import contextvars
import tomllib
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "SMARTCITY_"
CONFIG_ENV = "SMARTCITY_CONFIG"

S = typing.TypeVar("S", bound="ComponentSettings")

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("config", default=None)


def shared(default: Any, description: str, name: str) -> Any:
    """A setting every component shares under one variable name, e.g. ``SMARTCITY_MQTT_URL``."""
    return Field(
        default,
        description=description,
        validation_alias=AliasChoices(name, f"{ENV_PREFIX}{name.upper()}"),
    )


class ConfigFileSource(PydanticBaseSettingsSource):
    """Top-level keys of the TOML file, overlaid with the component's own ``[section]``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = _config_file.get()
        self.data: dict[str, Any] = {}
        if path is None:
            return
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {path}: {exc}") from exc
        section = getattr(settings_cls, "section", "")
        own = raw.get(section, {}) if section else {}
        fields = settings_cls.model_fields
        self.data = {k: v for k, v in raw.items() if k in fields and not isinstance(v, dict)}
        self.data.update(own if isinstance(own, dict) else {})

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class SettingsError(Exception):
    """Settings that cannot work; the message says which and how to fix it."""


class ComponentSettings(BaseSettings):
    """Base of every component's settings (flag > environment > config file > default)."""

    section: ClassVar[str] = ""
    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.section:
            cls.model_config["env_prefix"] = f"{ENV_PREFIX}{cls.section.upper()}_"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ConfigFileSource(settings_cls))


class MqttSettings(ComponentSettings):
    mqtt_url: str = shared(
        "mqtt://127.0.0.1:1883",
        "MQTT broker, mqtt://[user:password@]host:port (mqtts:// for TLS).",
        "mqtt_url",
    )
    city: str = shared("cremona", "City level of the topic scheme.", "city")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://host:1883 or mqtts://host:8883")
        return url


class InfluxSettings(ComponentSettings):
    influx_url: str = shared(
        "http://127.0.0.1:8086",
        "InfluxDB base URL; its v1 API (/write, /query) is used, so 1.x, 2.x and 3.x all work.",
        "influx_url",
    )
    influx_db: str = shared(
        "smartcity", "InfluxDB database (bucket mapped to it on 2.x/3.x).", "influx_db"
    )
    influx_user: str | None = shared(None, "InfluxDB user, if auth is on.", "influx_user")
    influx_password: str | None = shared(
        None, "InfluxDB password, if auth is on.", "influx_password"
    )

    @field_validator("influx_url")
    @classmethod
    def _http_scheme(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must look like http://host:8086")
        return url.rstrip("/")


def mqtt_endpoint(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """Host, port, TLS, user and password from an ``mqtt://`` or ``mqtts://`` URL."""
    parts = urlsplit(url)
    tls = parts.scheme == "mqtts"
    return (
        parts.hostname or "127.0.0.1",
        parts.port or (8883 if tls else 1883),
        tls,
        (parts.username),
        parts.password,
    )


def safe_url(url: str) -> str:
    """The broker URL without credentials, for logs and reports."""
    host, port, tls, _, _ = mqtt_endpoint(url)
    return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"


@contextmanager
def config_file(path: Path | None) -> Iterator[None]:
    token = _config_file.set(path)
    try:
        yield
    finally:
        _config_file.reset(token)


def add_arguments(parser: argparse.ArgumentParser, settings_cls: type[ComponentSettings]) -> None:
    """One flag per setting, its help naming the variable that also sets it."""
    for name, info in settings_cls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = _env_name(settings_cls, name, info)
        default = (
            " (required)"
            if info.is_required()
            else ""
            if info.default in (None, "")
            else f" (default: {info.default})"
        )
        help_text = f"{info.description or ''}{default} [env {env}]"
        kind = _argument_kind(info.annotation)
        if kind is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif isinstance(kind, tuple):
            parser.add_argument(flag, dest=name, choices=kind, default=None, help=help_text)
        else:
            parser.add_argument(
                flag, dest=name, type=kind, default=None, metavar=name.upper(), help=help_text
            )


def _env_name(settings_cls: type[ComponentSettings], name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"{settings_cls.model_config.get('env_prefix', ENV_PREFIX)}{name}".upper()


def _argument_kind(annotation: Any) -> Any:
    """The argparse type for an annotation: a converter, ``bool``, or a tuple of choices."""
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _argument_kind(inner[0])
    if origin is Literal:
        return tuple(str(a) for a in get_args(annotation))
    if annotation in (int, float, bool, Path):
        return annotation
    return str


def load(settings_cls: type[S], args: argparse.Namespace) -> S:
    """Build the settings from flags, environment and the ``--config`` file, or explain why not."""
    given = {
        name: getattr(args, name)
        for name in settings_cls.model_fields
        if getattr(args, name, None) is not None
    }
    path = getattr(args, "config", None)
    with config_file(Path(path) if path else None):
        try:
            return settings_cls(**given)
        except ValidationError as exc:
            lines = [
                f"  {'.'.join(map(str, e['loc'])) or settings_cls.section}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            raise SettingsError(
                "invalid settings (fix the flag, the SMARTCITY_* variable or the config file):\n"
                + "\n".join(lines)
            ) from None
