"""Settings for every component, from one place: flag, then ``SMARTCITY_*`` variable, then file.

Each component declares one pydantic model on :class:`ComponentSettings`; its fields become
command-line flags (``batch_size`` -> ``--batch-size``), environment variables
(``SMARTCITY_INGEST_BATCH_SIZE``, or ``SMARTCITY_MQTT_URL`` for the connection settings every
component shares) and keys of a TOML config file (top-level keys are shared, ``[ingest]`` holds
the ingester's own). Settings are validated at start-up, before anything connects, so a typo
fails fast with the name to fix.
"""

from __future__ import annotations

import argparse
import contextvars
import difflib
import json
import os
import tomllib
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

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


class SettingsError(Exception):
    """Settings that cannot work; the message says which and how to fix it."""


def _file_values(settings_cls: type[ComponentSettings]) -> dict[str, Any]:
    """Top-level keys of the TOML file, overlaid with the component's own ``[section]``."""
    path = _config_file.get()
    if path is None:
        return {}
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    section = settings_cls.section
    own = raw.get(section, {}) if section else {}
    fields = settings_cls.model_fields
    _check_top_level(settings_cls, path, [k for k, v in raw.items() if not isinstance(v, dict)])
    data = {k: v for k, v in raw.items() if k in fields and not isinstance(v, dict)}
    data.update(own if isinstance(own, dict) else {})
    return data


def _shared_names() -> set[str]:
    """The connection settings every component shares: the file's top-level keys."""
    return set(MqttSettings.model_fields) | set(InfluxSettings.model_fields)


def _check_top_level(settings_cls: type[ComponentSettings], path: Path, keys: list[str]) -> None:
    """Refuse a top-level key that is no shared setting: a typo would else be ignored silently
    (and the default used), which is worse than any error."""
    shared_names = _shared_names()
    own = set(settings_cls.model_fields) - shared_names
    for key in keys:
        if key in shared_names:
            continue
        if key in own:
            raise SettingsError(
                f"config file {path}: {key!r} is not a setting every component shares: put it "
                f"under [{settings_cls.section}]"
            )
        raise SettingsError(
            f"config file {path}: unknown top-level key {key!r}{_nearest(key, shared_names)}: "
            f"top-level keys are the shared settings ({', '.join(sorted(shared_names))}); a "
            "component's own go under its [section], e.g. [ingest]"
        )


def _nearest(name: str, valid: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the valid name closest to a misspelled one, if any is."""
    close = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_complex(annotation: Any) -> bool:
    """Whether a variable's text is JSON for this annotation (a dict, a list, a model)."""
    kind = get_origin(annotation) or annotation
    if kind in (types.UnionType, typing.Union):
        return any(_is_complex(a) for a in get_args(annotation) if a is not type(None))
    return isinstance(kind, type) and (
        issubclass(kind, dict | list | set | frozenset | tuple) or issubclass(kind, BaseModel)
    )


def _merge(low: Any, high: Any) -> Any:
    """``high`` over ``low``; two tables are merged key by key (a variable's JSON over a file's)."""
    if not (isinstance(low, dict) and isinstance(high, dict)):
        return high
    merged = dict(low)
    for key, value in high.items():
        merged[key] = _merge(merged[key], value) if key in merged else value
    return merged


def _aliases(info: FieldInfo) -> list[str]:
    """The other names a field's value may come under (a shared setting's variable names)."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [a for a in alias.choices if isinstance(a, str)]
    return [alias] if isinstance(alias, str) else []


def _gather(settings_cls: type[ComponentSettings], given: dict[str, Any]) -> dict[str, Any]:
    """The model's input: for each field, the given value, else its variable, else the file's.

    Variables are matched case-insensitively: a shared setting by its own names
    (``MQTT_URL``, then ``SMARTCITY_MQTT_URL``), then every field by the component's prefix
    (``SMARTCITY_EDGE_INTERVAL``). A variable for a table or list holds JSON (or a form the
    field parses itself); a table from a variable is merged into the file's, key by key.
    """
    environ = {k.lower(): v for k, v in os.environ.items()}
    in_file = _file_values(settings_cls)
    prefix = settings_cls.env_prefix()
    rest = dict(given)
    values: dict[str, Any] = {}
    for name, info in settings_cls.model_fields.items():
        aliases = _aliases(info)
        names = aliases + ([name] if name not in aliases else [])
        layers: list[Any] = []  # lowest priority first: file, variable, given
        if name in in_file:
            layers.append(in_file.pop(name))
        for env_name in [a.lower() for a in aliases] + [f"{prefix}{name}".lower()]:
            if env_name in environ:
                text = environ[env_name]
                # JSON for a table or list; any other text goes to the model as it is, for
                # a field that also reads a compact form (``--fleet airquality=20``)
                json_text = _is_complex(info.annotation) and text.lstrip()[:1] in ("{", "[")
                layers.append(_decode(env_name, text) if json_text else text)
                break
        lowered = [n.lower() for n in names]
        matched = [k for n in lowered for k in rest if k.lower() == n]
        if matched:
            layers.append(rest[matched[0]])
            for k in set(matched):
                del rest[k]
        if layers:
            value = layers[0]
            for higher in layers[1:]:
                value = _merge(value, higher)
            # under the name it was given by, else its first name: the one errors then give
            key = matched[0] if matched and matched[0] in names else names[0]
            values[key] = value
    values.update(in_file)  # a [section]'s unknown keys, which the model then rejects by name
    values.update(rest)
    return values


def _decode(env_name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{env_name.upper()}: not valid JSON: {exc}") from None


class ComponentSettings(BaseModel):
    """Base of every component's settings (flag > environment > config file > default).

    Built with keyword arguments (the flags), it reads the ``SMARTCITY_*`` variables and the
    config file of :func:`config_file` itself, so however a component builds its settings they
    come from the same places in the same order.
    """

    section: ClassVar[str] = ""
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    def __init__(self, **given: Any) -> None:
        super().__init__(**_gather(type(self), given))

    @classmethod
    def env_prefix(cls) -> str:
        """``SMARTCITY_<SECTION>_``: the prefix of this component's own variables."""
        return f"{ENV_PREFIX}{cls.section.upper()}_" if cls.section else ""


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
        # a default_factory's value, not pydantic's placeholder for "no plain default"
        value = None if info.is_required() else info.get_default(call_default_factory=True)
        default = (
            " (required)"
            if info.is_required()
            else ""
            if value is None or value == "" or value == {} or value == []
            else f" (default: {value})"
        )
        # argparse expands %-formats in help: a description saying "20%" must stay literal
        help_text = f"{info.description or ''}{default} [env {env}]".replace("%", "%%")
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
    return f"{settings_cls.env_prefix() or ENV_PREFIX}{name}".upper()


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
                + (
                    _nearest(str(e["loc"][-1]), settings_cls.model_fields)
                    if e["type"] == "extra_forbidden" and e["loc"]
                    else ""
                )
                for e in exc.errors(include_url=False)
            ]
            raise SettingsError(
                "invalid settings (fix the flag, the SMARTCITY_* variable or the config file):\n"
                + "\n".join(lines)
            ) from None
