import math

import pytest

from gateway.answers import valid_response_topic
from gateway.core.commands import (
    MAX_PAYLOAD,
    Arrival,
    CommandPolicy,
    Range,
    RateLimit,
    RecentIds,
    fit_value,
    parse_ack,
    parse_write,
    request_id_of,
)
from gateway.core.models import TagType
from gateway.errors import CommandRejected


def policy(**overrides: object) -> CommandPolicy:
    options: dict[str, object] = {
        "writable": ["System1.*.*.Setpoint"],
        "acknowledge": ["1*"],
        "ranges": [Range("System1.*.*.Setpoint", 0.0, 100.0)],
        "max_age": 30.0,
        "max_wait": 2.0,
        "rate": 5.0,
        "burst": 10,
    }
    options.update(overrides)
    return CommandPolicy(**options)  # type: ignore[arg-type]


def refused(match: str):  # type: ignore[no-untyped-def]
    return pytest.raises(CommandRejected, match=match)


def test_write_envelope_and_bare_values() -> None:
    request = parse_write(b'{"value": 42.5, "id": "r1", "ts": "2026-11-24T10:00:00.000Z"}')
    assert (request.value, request.request_id, request.ts_ms) == (42.5, "r1", 1795514400000)
    assert parse_write(b"42").value == 42
    assert parse_write(b'"auto"').value == "auto"
    assert parse_write(b"true").value is True


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"NaN", "malformed JSON"),
        (b'{"value": 1e999}', "malformed JSON"),
        (b'{"id": "x"}', 'missing "value"'),
        (b'{"value": 1, "extra": 2}', "unknown field"),
        (b'{"value": 1, "id": 7}', "id must be"),
        (b'{"value": 1, "ts": "yesterday"}', "not an ISO 8601"),
        (b'{"value": 1, "ts": 12}', "ts must be"),
        (b'{"value": ' + b"1" * MAX_PAYLOAD + b"}", "payload too large"),
    ],
)
def test_malformed_writes_are_refused(payload: bytes, reason: str) -> None:
    with refused(reason):
        parse_write(payload)


def test_ack_payloads() -> None:
    assert parse_ack(b"") == parse_ack(b"  ")
    request = parse_ack(b'{"id": "a1", "comment": "checked on site"}')
    assert (request.request_id, request.comment) == ("a1", "checked on site")
    with refused("comment must be"):
        parse_ack(b'{"comment": 5}')
    with refused("an acknowledge is empty or"):
        parse_ack(b"[1]")


def test_request_id_is_recovered_for_the_answer_when_possible() -> None:
    assert request_id_of(b'{"value": "x", "id": "r9"}') == "r9"
    assert request_id_of(b"{broken") is None
    assert request_id_of(b'{"id": 5}') is None


@pytest.mark.parametrize(
    ("value", "tag_type"),
    [
        ("50", TagType.FLOAT),
        (True, TagType.FLOAT),
        (None, TagType.FLOAT),
        ([1], TagType.FLOAT),
        (math.nan, TagType.FLOAT),
        (math.inf, TagType.FLOAT),
        (1.5, TagType.INT),
        (1.0, TagType.INT),
        (2**70, TagType.INT),
        (1, TagType.BOOL),
        ("true", TagType.BOOL),
        (1, TagType.STRING),
        ("x" * 5000, TagType.STRING),
        ({"a": 1}, TagType.STRING),
    ],
)
def test_values_that_do_not_fit_the_tag_type(value: object, tag_type: TagType) -> None:
    with pytest.raises(CommandRejected):
        fit_value(value, tag_type)


def test_values_that_fit() -> None:
    assert fit_value(50, TagType.FLOAT) == 50
    assert fit_value(-3, TagType.INT) == -3
    assert fit_value(False, TagType.BOOL) is False
    assert fit_value("manual", TagType.STRING) == "manual"


def test_allow_list_is_globs_and_empty_means_nothing() -> None:
    assert policy().may_write("System1.Area1.Tank1.Setpoint")
    assert not policy().may_write("System1.Area1.Tank1.Level")
    assert not policy(writable=[]).may_write("System1.Area1.Tank1.Setpoint")
    with refused("not in commands.writable"):
        policy(writable=[]).check_write("System1.Area1.Tank1.Setpoint", TagType.FLOAT, 1.0)


def test_a_star_in_the_allow_list_stays_within_its_level() -> None:
    narrow = policy(writable=["System1.*.Setpoint"], ranges=[])
    assert not narrow.may_write("System1.Area1.Tank1.Setpoint")
    assert narrow.may_write("System1.Area1.Setpoint")
    assert policy(writable=["System1.**.Setpoint"]).may_write("System1.Area1.Tank1.Setpoint")


def test_acknowledgements_have_their_own_allow_list() -> None:
    policy().check_ack("1001")
    with refused("not in commands.acknowledge"):
        policy().check_ack("2001")
    with refused("not in commands.acknowledge"):
        policy(acknowledge=[]).check_ack("1001")


def test_ranges() -> None:
    tag = "System1.Area1.Tank1.Setpoint"
    assert policy().check_write(tag, TagType.FLOAT, 100) == 100
    with refused("below the allowed minimum 0"):
        policy().check_write(tag, TagType.FLOAT, -0.5)
    with refused("above the allowed maximum 100"):
        policy().check_write(tag, TagType.FLOAT, 100.5)


def test_time_is_judged_from_arrival_by_ts_by_mqtt_expiry_and_by_max_wait() -> None:
    fresh = policy(max_age=30.0, max_wait=2.0)
    arrived = Arrival(monotonic=100.0, wall_ms=1_000, expiry_s=None)
    fresh.check_sent_in_time(1_000, arrived, now=101.0, now_ms=31_000)
    with refused("^expired: command too old"):
        fresh.check_sent_in_time(1_000, arrived, now=101.0, now_ms=31_001)
    with refused("in the future"):
        fresh.check_sent_in_time(100_000, arrived, now=101.0, now_ms=1_000)
    with refused("^expired: waited 2.1 s"):
        fresh.check_sent_in_time(None, arrived, now=102.1, now_ms=1_000)
    fresh.check_sent_in_time(None, arrived, now=102.0, now_ms=1_000)
    expiring = Arrival(monotonic=100.0, wall_ms=1_000, expiry_s=1)
    with refused("^expired: its MQTT message expiry of 1 s passed"):
        fresh.check_sent_in_time(None, expiring, now=101.5, now_ms=1_000)
    fresh.check_sent_in_time(None, expiring, now=101.0, now_ms=1_000)


def test_an_id_is_executed_at_most_once_even_while_the_first_is_in_flight() -> None:
    checker = policy()
    checker.claim("r1")
    with refused("duplicate request id 'r1': the first is still being executed"):
        checker.claim("r1")
    checker.release("r1", reached_wincc=True, now=0.0)
    with refused("duplicate request id 'r1': already executed"):
        checker.claim("r1")
    checker.claim("r2")
    checker.release("r2", reached_wincc=False, now=0.0)
    checker.claim("r2")  # never reached WinCC: the sender may try again
    checker.claim(None)
    checker.claim(None)
    recent = RecentIds(window=10.0, limit=2)
    recent.add("a", 0.0)
    recent.add("b", 11.0)
    assert "a" not in recent
    recent.add("c", 12.0)
    recent.add("d", 13.0)
    assert "b" not in recent
    assert "d" in recent


def test_rate_limit_is_a_token_bucket() -> None:
    bucket = RateLimit(rate=2.0, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5)
    assert not bucket.allow(0.5)


def test_response_topics_with_wildcards_are_not_used() -> None:
    assert valid_response_topic("app/replies/1")
    for topic in ("", "app/+/x", "app/#", "a\x00b", "x" * 70_000):
        assert not valid_response_topic(topic)


@pytest.mark.parametrize("value", [1, 1.5, True, "x", None, [1], {"a": 1}])
def test_a_tag_of_a_type_the_gateway_does_not_know_is_never_written(value: object) -> None:
    with pytest.raises(CommandRejected, match="type is unknown to the gateway"):
        fit_value(value, TagType.UNKNOWN)
