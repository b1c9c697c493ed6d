"""The contract accepts good messages and refuses bad ones with a reason.

Golden cases live in ``tests/cases/<name>/``: ``topic`` and ``payload.json`` in, and either
``expected.lp`` (the exact line protocol) or ``expected.err`` (the reason code, then words the
reason must contain) out. Run with ``SMARTCITY_REGEN_CASES=1`` to rewrite outputs for review.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.convert import message_lines
from smartcity.contract import (
    MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    InvalidMessage,
    decode,
    encode_telemetry,
    parse_topic,
)
from smartcity.devices import DEVICE_TYPES

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())
RECEIVED_NS = 1_768_478_400_000_000_000


def run_case(case: Path) -> tuple[str, str]:
    topic = (case / "topic").read_text()
    payload = (case / "payload.json").read_bytes().rstrip(b"\n")
    try:
        msg = decode(topic, payload)
    except InvalidMessage as exc:
        return "err", f"{exc.code}\n{exc.reason}\n"
    return "lp", "\n".join(message_lines(msg, RECEIVED_NS)) + "\n"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case: Path) -> None:
    kind, out = run_case(case)
    if os.environ.get("SMARTCITY_REGEN_CASES"):
        (case / f"expected.{kind}").write_text(out)
    expected_lp = case / "expected.lp"
    expected_err = case / "expected.err"
    if case.name.startswith("reject_"):
        assert kind == "err", f"{case.name} was accepted:\n{out}"
        code, *words = expected_err.read_text().splitlines()
        got_code, reason = out.splitlines()[0], out.splitlines()[1]
        assert got_code == code
        assert reason, "a rejection must say why"
        for w in words:
            assert w in reason, f"reason {reason!r} should mention {w!r}"
    else:
        assert kind == "lp", f"{case.name} was rejected: {out}"
        assert out == expected_lp.read_text()


def _reading(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": datetime.now(UTC).isoformat(),
        "seq": 1,
        "fillingLevel": 0.3,
        "temperature": 10.0,
        "storedWasteKind": "paper",
        "status": "ok",
        "batteryLevel": 0.8,
    }
    return base | over


TOPIC = "smartcity/v1/cremona/wastebin/wb-1/telemetry"


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b'{"v":1,"readings":[' + b" " * MAX_PAYLOAD_BYTES + b"]}"
    with pytest.raises(InvalidMessage) as exc:
        decode(TOPIC, payload)
    assert exc.value.code == "too_large"
    assert str(MAX_PAYLOAD_BYTES) in exc.value.reason


def test_batch_larger_than_limit_is_refused() -> None:
    payload = json.dumps({"v": 1, "readings": [_reading(seq=i) for i in range(MAX_BATCH + 1)]})
    with pytest.raises(InvalidMessage) as exc:
        decode(TOPIC, payload.encode())
    assert exc.value.code == "invalid"


def test_clock_skew_within_five_minutes_is_accepted_beyond_refused() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=60)
    late = datetime.now(UTC) + timedelta(minutes=30)
    decode(TOPIC, json.dumps({"v": 1, "readings": [_reading(ts=soon.isoformat())]}).encode())
    with pytest.raises(InvalidMessage, match="future"):
        decode(TOPIC, json.dumps({"v": 1, "readings": [_reading(ts=late.isoformat())]}).encode())


@pytest.mark.parametrize(
    ("topic", "code"),
    [
        ("smartcity/v2/cremona/wastebin/wb-1/telemetry", "bad_version"),
        ("smartcity/v1/cremona/wastebin/wb-1", "bad_topic"),
        ("smartcity/v1/cremona/wastebin/wb-1/telemetry/extra", "bad_topic"),
        ("other/v1/cremona/wastebin/wb-1/telemetry", "bad_topic"),
        ("smartcity/v1/Cremona!/wastebin/wb-1/telemetry", "bad_topic"),
        ("smartcity/v1/cremona/wastebin/wb-1/gossip", "bad_topic"),
        ("smartcity/v1/cremona/wastebin/wb-1/cmd", "bad_topic"),
        ("smartcity/v1/cremona/parking/p-1/telemetry", "unknown_device_type"),
        ("smartcity/v1/cremona/wastebin/-bad/telemetry", "bad_device_id"),
        ("smartcity/v1/cremona/wastebin/a\nb/telemetry", "bad_device_id"),
    ],
)
def test_topic_errors(topic: str, code: str) -> None:
    payload = json.dumps({"v": 1, "readings": [_reading()]}).encode()
    with pytest.raises(InvalidMessage) as exc:
        decode(topic, payload)
    assert exc.value.code == code


def test_topic_levels_round_trip() -> None:
    t = parse_topic("smartcity/v1/cremona/evcharger/ev-00001/events")
    assert (t.city, t.device_type, t.device_id, t.channel) == (
        "cremona",
        "evcharger",
        "ev-00001",
        "events",
    )
    assert str(t) == "smartcity/v1/cremona/evcharger/ev-00001/events"


def test_replayed_reading_is_the_same_point_and_same_ms_readings_are_two() -> None:
    """Idempotent replays, and no overwrite of two readings stamped in one millisecond."""
    ts = datetime(2026, 1, 15, 8, 0, 0, 123000, tzinfo=UTC).isoformat()
    one = decode(TOPIC, json.dumps({"v": 1, "readings": [_reading(ts=ts, seq=5)]}).encode())
    again = decode(TOPIC, json.dumps({"v": 1, "readings": [_reading(ts=ts, seq=5)]}).encode())
    other = decode(TOPIC, json.dumps({"v": 1, "readings": [_reading(ts=ts, seq=6)]}).encode())
    assert message_lines(one, 1) == message_lines(again, 2)
    stamp = lambda m: message_lines(m, 0)[0].rsplit(" ", 1)[1]  # noqa: E731
    assert stamp(one) != stamp(other)


def test_every_device_type_round_trips_through_its_encoder() -> None:
    from simulators import SIMULATORS
    from simulators.fleet import build_fleet

    for name in DEVICE_TYPES:
        (dev,) = build_fleet(3, {name: 1})
        reading, _ = dev.read(datetime(2026, 1, 15, 20, 0, tzinfo=UTC))
        msg = decode(
            f"smartcity/v1/cremona/{name}/{dev.device_id}/telemetry",
            encode_telemetry([reading], dev.placement.zone),
        )
        assert msg.body.readings == [reading]
        assert SIMULATORS[name].device_type is DEVICE_TYPES[name]
