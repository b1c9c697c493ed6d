"""Thousands of generated payloads and topics: the ingester never crashes, each bad message is
dead-lettered with a reason, and every line it produces is accepted by a real InfluxDB."""

from __future__ import annotations

import base64
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.convert import (
    DEADLETTER_MAX_BYTES,
    DEADLETTER_PAYLOAD_BYTES,
    deadletter_line,
)
from ingest.service import Ingester, deadletter_payload
from ingest.settings import IngestSettings
from simulators.fleet import build_fleet
from smartcity.contract import MAX_PAYLOAD_BYTES, InvalidMessage, decode
from smartcity.devices import DEVICE_TYPES

from .conftest import Influx


def valid_reading(device_type: str) -> dict[str, Any]:
    """A valid reading of the type, as JSON: its simulator's first, at a fixed moment."""
    (device,) = build_fleet(1, {device_type: 1})
    reading, _ = device.read(datetime(2026, 1, 15, 18, 30, tzinfo=UTC))
    return reading.model_dump(mode="json")


#: A valid reading of every device type, generated from the type (so a new one is fuzzed too).
GOOD = {name: valid_reading(name) for name in DEVICE_TYPES}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    device_type = draw(st.sampled_from([*GOOD, "toaster", ""]))
    device_id = draw(st.one_of(st.just("dev-1"), st.text(max_size=20)))
    channel = draw(st.sampled_from(["telemetry", "events", "status", "health", "cmd", "x"]))
    topic = draw(st.one_of(
        st.just(f"smartcity/v1/cremona/{device_type}/{device_id}/{channel}"),
        st.text(max_size=60),
    ))  # fmt: skip
    kind = draw(st.integers(0, 3))
    if kind == 0:
        payload = draw(st.binary(max_size=200))
    elif kind == 1:
        payload = json.dumps(draw(json_values)).encode()
    else:  # a valid reading with one field broken or removed, or left alone
        reading = dict(GOOD.get(device_type) or draw(st.sampled_from(list(GOOD.values()))))
        key = draw(st.sampled_from(sorted(reading)))
        if kind == 2:
            reading[key] = draw(json_values)
        payload = json.dumps(
            {"v": 1, "zone": draw(st.text(max_size=12)), "readings": [reading]}
        ).encode()
    return topic, payload


def test_generated_messages_never_crash_and_bad_ones_are_dead_lettered(
    tmp_path: Path, influx: Influx
) -> None:
    ingester = Ingester(
        IngestSettings(spool_dir=tmp_path / "spool", metrics_port=0, influx_url=influx.url)
    )
    produced: list[str] = []

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages())
    def check(message: tuple[str, bytes]) -> None:
        topic, payload = message
        try:
            decode(topic, payload)
            valid = True
        except InvalidMessage:
            valid = False
        invalid_before = ingester.metrics.invalid
        ingester.handle(topic, payload)
        lines, ingester.batch.lines = ingester.batch.lines, []
        dead = ingester.batch.deadletters
        ingester.batch.deadletters = []
        if valid:
            assert ingester.metrics.invalid == invalid_before
            assert lines
            assert not any(x.startswith("deadletter,") for x in lines)
        else:
            assert ingester.metrics.invalid == invalid_before + 1
            assert len(lines) == 1
            assert lines[0].startswith("deadletter,")
            assert json.loads(dead[0])["reason"]
        produced.extend(lines)

    check()
    # every line the fuzzing produced is valid line protocol for a real InfluxDB
    influx.query(f'CREATE DATABASE "{influx.db}"')
    body = "\n".join(produced).encode()
    req = urllib.request.Request(f"{influx.url}/write?db={influx.db}", body, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 204
    assert influx.count("deadletter", "reason") > 0


@given(
    st.sampled_from([b"\x01", "è".encode(), "🙂".encode(), b"\xff", b'"']),
    st.integers(0, MAX_PAYLOAD_BYTES),
    st.sampled_from(["\x01", "🙂", '"', "a"]),
)
@settings(max_examples=30, deadline=None)
def test_a_dead_letter_stays_under_its_bound_and_says_it_was_cut(
    unit: bytes, size: int, char: str
) -> None:
    """The worst inputs for JSON escaping: control characters, multi-byte and astral ones."""
    payload = (unit * (size // len(unit) + 1))[:size]
    hostile = char * 70_000  # a topic can be 64 KiB; a reason can quote a hostile field name
    record = json.loads(message := deadletter_payload(hostile, payload, "invalid", hostile))
    assert len(message) <= DEADLETTER_MAX_BYTES
    assert record["payload_bytes"] == size
    kept = (
        base64.b64decode(record["payload"])
        if record["payload_encoding"] == "base64"
        else record["payload"].encode()
    )
    assert payload.startswith(kept)
    assert record["payload_truncated"] == (len(kept) < size)
    assert size - len(kept) <= max(0, size - DEADLETTER_PAYLOAD_BYTES) + 3, "cut at a character"
    assert record["topic"].endswith("…")
    assert record["reason"].endswith("…")
    line = deadletter_line(hostile, payload, "invalid", hostile, None, 1)
    assert "payload_truncated=true" in line or size <= DEADLETTER_PAYLOAD_BYTES
