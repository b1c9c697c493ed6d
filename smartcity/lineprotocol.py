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

from collections.abc import Mapping

from smartcity.devices import Row


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


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | str | bool],
    time_ns: int,
) -> str:
    """One point; tags are sorted (InfluxDB's preferred order, cheaper to index)."""
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    tag_part = "".join(f",{escape_key(k)}={escape_tag_value(v)}" for k, v in sorted(tags.items()))
    field_part = ",".join(f"{escape_key(k)}={format_field_value(v)}" for k, v in fields.items())
    return f"{escape_measurement(measurement)}{tag_part} {field_part} {time_ns}"


def row_line(row: Row, common_tags: Mapping[str, str]) -> str:
    """A device row with the message's common tags (device_id, device_type, zone) added."""
    return line(row.measurement, {**common_tags, **row.tags}, row.fields, row.time_ns)
