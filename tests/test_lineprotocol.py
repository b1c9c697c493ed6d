"""Hostile names and values survive line protocol exactly, checked against a real InfluxDB."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ingest.convert import message_lines
from smartcity.contract import decode, topic
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


def test_readings_in_one_millisecond_are_one_point_only_when_seq_agrees_mod_a_million(
    db: Influx,
) -> None:
    """The rule of docs/protocol.md ("Idempotence and gaps"), against a real InfluxDB: a point's
    time is the millisecond plus ``seq mod 10^6`` ns, so seqs less than a million apart never
    share a point, and a replay (or seqs exactly a multiple of a million apart) does."""
    ts = "2026-01-15T08:00:00.123Z"
    seqs = [5, 6, 999_999, 1_000_000, 1_000_004, 2**53 - 1]
    replays = [5, 1_000_005]  # the same point as 5: a replay, and 5 + 10^6
    lines = []
    for seq in seqs + replays:
        reading = {"ts": ts, "seq": seq, "fillingLevel": 0.5, "temperature": 11.0,
                   "storedWasteKind": "plastic", "status": "ok", "batteryLevel": 0.7}  # fmt: skip
        payload = json.dumps({"v": 1, "readings": [reading]}).encode()
        lines += message_lines(decode(topic("wastebin", "wb-1", "telemetry"), payload), 0)
    write(db, "\n".join(lines))
    rows = db.query('SELECT "seq" FROM "wastebin"')
    stored = sorted(int(r["seq"]) for r in rows)  # type: ignore[call-overload]
    assert stored == sorted({s % 10**6: s for s in seqs + replays}.values())
    assert len(stored) == len({s % 10**6 for s in seqs})
