"""Hostile names and values survive line protocol exactly, checked against a real InfluxDB."""

from __future__ import annotations

import urllib.request

import pytest

from smartcity.lineprotocol import LineProtocolError, escape_tag_value, format_field_value, line

from .conftest import Influx

HOSTILE = [
    "plain",
    "with space",
    "comma,inside",
    "equals=sign",
    'double"quote',
    "single'quote",
    "back\\slash",
    "trailing\\",
    "new\nline",
    "carriage\rreturn",
    "tab\there",
    "unicode è à 🙂 日本",
    '" , = \\ \n all at once',
    "measurement m,tag=x f=1 123\ninjected,tag=y f=2 456",
]
TAG_SAFE = [h for h in HOSTILE if not any(c in h for c in "\\\n\r")]


def write(influx: Influx, body: str) -> None:
    req = urllib.request.Request(
        f"{influx.url}/write?db={influx.db}&precision=ns", body.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


@pytest.fixture
def db(influx: Influx) -> Influx:
    influx.query(f'CREATE DATABASE "{influx.db}"')
    return influx


def test_hostile_field_values_round_trip(db: Influx) -> None:
    body = "\n".join(
        line("hostile", {"case": str(i)}, {"text": text}, 1_000 + i)
        for i, text in enumerate(HOSTILE)
    )
    write(db, body)
    rows = db.query('SELECT "text", "case" FROM "hostile"')
    assert {int(str(r["case"])): r["text"] for r in rows} == dict(enumerate(HOSTILE))


def test_hostile_tag_values_and_keys_round_trip_or_are_refused(db: Influx) -> None:
    body = "\n".join(
        line("tags", {"device_id": text, text: "k"}, {"n": i}, 2_000 + i)
        for i, text in enumerate(TAG_SAFE)
    )
    write(db, body)
    rows = db.query('SELECT "n", "device_id" FROM "tags"')
    assert {r["n"]: r["device_id"] for r in rows} == dict(enumerate(TAG_SAFE))
    for text in set(HOSTILE) - set(TAG_SAFE):
        with pytest.raises(LineProtocolError):
            escape_tag_value(text)


def test_hostile_measurement_and_field_keys(db: Influx) -> None:
    write(db, line("odd name,with comma", {"t": "1"}, {"odd key=1,x y": 1.5}, 3_000))
    rows = db.query('SELECT * FROM "odd name,with comma"')
    assert rows[0]["odd key=1,x y"] == 1.5


def test_non_finite_numbers_and_empty_points_are_refused() -> None:
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(LineProtocolError):
            format_field_value(bad)
    with pytest.raises(LineProtocolError):
        line("m", {}, {}, 1)
    with pytest.raises(LineProtocolError):
        escape_tag_value("")


def test_types_are_explicit() -> None:
    assert format_field_value(3) == "3i"
    assert format_field_value(3.0) == "3.0"
    assert format_field_value(True) == "true"
    assert format_field_value('a"b\\c') == '"a\\"b\\\\c"'
