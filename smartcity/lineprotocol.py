"""InfluxDB line protocol, escaped so that nothing a device sends can change a line's meaning.

Rules checked against a real InfluxDB 1.6 (see ``tests/test_lineprotocol.py``):

* measurement: escape ``,`` and space;
* tag keys, tag values and field keys: escape ``,``, ``=`` and space;
* string field values: escape ``\\`` and ``"``; newlines are kept inside the quotes.

Tag values cannot carry a newline or a backslash at all in InfluxDB 1.x (a backslash is kept
literally and a trailing one breaks the line), so those are refused with :class:`LineProtocolError`
instead of being silently altered. Only validated, bounded values ever become tags.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel


class LineProtocolError(ValueError):
    """A value that cannot be written as line protocol without changing its meaning."""


_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
_TAG_FORBIDDEN = ("\n", "\r", "\\")


def escape_measurement(name: str) -> str:
    _no_newline(name, "measurement")
    return name.translate(_MEASUREMENT)


def escape_key(key: str) -> str:
    """A tag key or field key."""
    _no_newline(key, "key")
    return key.translate(_KEY)


def escape_tag_value(value: str) -> str:
    if not value:
        raise LineProtocolError("a tag value cannot be empty")
    for bad in _TAG_FORBIDDEN:
        if bad in value:
            raise LineProtocolError(f"a tag value cannot contain {bad!r}: {value!r:.60}")
    return value.translate(_KEY)


def format_field_value(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise LineProtocolError("InfluxDB cannot store NaN or infinity")
        return repr(value)
    return '"' + value.translate(_STRING) + '"'


def _no_newline(text: str, what: str) -> None:
    if not text or "\n" in text or "\r" in text:
        raise LineProtocolError(f"a {what} must be non-empty and on one line: {text!r:.60}")


def encode_fields(fields: Mapping[str, float | int | str | bool]) -> str:
    """A field set from a mapping (types as given: write floats as floats)."""
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    return ",".join(f"{escape_key(k)}={format_field_value(v)}" for k, v in fields.items())


@functools.lru_cache(maxsize=100_000)
def tag_text(tags: tuple[tuple[str, str], ...]) -> str:
    """``,k=v,...`` for a tag set; cached, since a city has a bounded number of devices."""
    return "".join(f",{escape_key(k)}={escape_tag_value(v)}" for k, v in tags)


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | str | bool],
    time_ns: int,
) -> str:
    """One point; tags are sorted (InfluxDB's preferred order, cheaper to index)."""
    return (
        f"{escape_measurement(measurement)}{tag_text(tuple(sorted(tags.items())))} "
        f"{encode_fields(fields)} {time_ns}"
    )


FieldEncoder = Callable[[BaseModel], str]


@functools.cache
def model_encoder(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> FieldEncoder:
    """A fast encoder of a model's scalar fields, built once per model from its annotations.

    A field declared ``float`` is always written as a float, even when the JSON said ``230``:
    InfluxDB fixes a field's type per shard, and an integer would make the next float fail.
    Literal values are quoted once here; None values and nested models or lists are left out.

    The encoder is generated Python source (as ``dataclasses`` does for ``__init__``): one
    f-string for the required fields and a test per optional one. It runs for every reading the
    ingester stores, and this is about three times faster than a loop over per-field functions.
    """
    namespace: dict[str, Any] = {"_STRING": _STRING}
    required: list[str] = []
    optional: list[str] = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind, nullable = _value_kind(info.annotation)
        if kind is None:
            continue
        if not name.isidentifier():
            raise LineProtocolError(f"field {name!r} is not an identifier")
        value = "x" if nullable else f"o.{name}"
        if kind == "float":
            text = f"{{float({value})!r}}"
        elif kind == "int":
            text = f"{{{value}}}i"
        elif kind == "bool":
            text = f'{{"true" if {value} else "false"}}'
        elif kind == "str":
            text = f'"{{{value}.translate(_STRING)}}"'
        else:  # a Literal: its values quoted in advance
            namespace[f"_L_{name}"] = kind
            text = f"{{_L_{name}[{value}]}}"
        piece = f",{escape_key(name)}={text}"
        if nullable:
            optional.append(f"    x = o.{name}\n    if x is not None:\n        s += f'{piece}'\n")
        else:
            required.append(piece)
    head = "".join(required)
    source = f"def encode(o):\n    s = f'{head}'\n{''.join(optional)}    return s[1:]\n"
    exec(source, namespace)  # from field names checked to be identifiers above
    encode: FieldEncoder = namespace["encode"]
    return encode


def _value_kind(annotation: Any) -> tuple[str | dict[Any, str] | None, bool]:
    """How a field is written (float, int, bool, str, or a Literal's quoted values), and
    whether it may be None; (None, _) for what is not a scalar field."""
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return (_value_kind(inner[0])[0], True) if len(inner) == 1 else (None, False)
    if origin is Literal:
        return {v: format_field_value(v) for v in get_args(annotation)}, False
    for scalar in (bool, float, int, str):
        if annotation is scalar:
            return scalar.__name__, False
    return None, False
