"""Commands end to end: a real MQTT client -> mosquitto -> gateway -> simulator, and back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands import MAX_WAITING
from gateway.core.timestamps import format_ts, now_ms
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, Received, Subscriber, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, alarm_id_of, alarm_topic, running_gateway, settings_for

pytestmark = pytest.mark.slow

SETPOINT = "System1.Area1.Tank1.Setpoint"  # float, writable
POSITION = "System1.Area1.Valve1.Position"  # int, writable
MODE = "System1.Area1.Valve1.Mode"  # string, writable
RUNNING = "System1.Area1.Pump1.Running"  # bool, writable
LEVEL = "System1.Area1.Tank1.Level"  # float, read-only
WRITABLE = ["System1.*.*.Setpoint", "System1.*.Valve*.*", "System1.*.Pump*.Running", LEVEL]
RESULT = f"{PREFIX}/cmd/result"


def write_topic(tag: str) -> str:
    return f"{PREFIX}/cmd/write/{tag_path(tag)}"


def command_config(sim: Simulator, broker: Mosquitto, tls: TlsFiles, tmp: Path, **commands: Any):
    poll = [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank1.*"]}]
    options = {
        "writable": WRITABLE,
        "acknowledge": ["**"],
        "rate_limit": 1000.0,
        "burst": 1000,
        **commands,
    }
    return settings_for(sim, broker, tls, tmp, poll=poll, commands=options)


class Commander:
    """Sends commands and awaits their answers on the result topic or a response topic."""

    def __init__(self, client: aiomqtt.Client, answers: Subscriber, v5: bool) -> None:
        self.client = client
        self.answers = answers
        self.v5 = v5

    async def send(
        self,
        topic: str,
        payload: bytes | str,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        expiry: int | None = None,
    ) -> dict[str, Any]:
        """Publish one command and return its answer."""
        seen = len(self.answers.messages)
        await self.publish(
            topic, payload, response_topic=response_topic, correlation=correlation, expiry=expiry
        )
        messages = await self.answers.wait_for(lambda ms: len(ms) > seen)
        answer: Received = messages[seen]
        self.last = answer
        return answer.json()  # type: ignore[no-any-return]

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        expiry: int | None = None,
    ) -> None:
        """Publish one command without waiting for its answer."""
        properties = None
        if self.v5 and (response_topic or correlation or expiry is not None):
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic:
                properties.ResponseTopic = response_topic
            if correlation:
                properties.CorrelationData = correlation
            if expiry is not None:
                properties.MessageExpiryInterval = expiry
        await self.client.publish(topic, payload, qos=1, properties=properties)

    async def answers_by_correlation(
        self, expected: int, timeout: float = 15.0
    ) -> dict[bytes, list[dict[str, Any]]]:
        """Every answer received, grouped by correlation data, once ``expected`` arrived."""
        await self.answers.wait_for(lambda ms: len(ms) >= expected, timeout=timeout)
        grouped: dict[bytes, list[dict[str, Any]]] = {}
        for message in self.answers.messages:
            correlation = getattr(message.properties, "CorrelationData", None) or b""
            grouped.setdefault(correlation, []).append(message.json())
        return grouped


@contextlib.asynccontextmanager
async def commander(broker: Mosquitto, *, v5: bool = True) -> AsyncIterator[Commander]:
    version = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with (
        subscribe(broker, RESULT, "replies/#", protocol=version) as answers,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=version) as client,
    ):
        yield Commander(client, answers, v5)


async def test_allowed_write_holds_and_answers_with_read_back_and_correlation(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(simulator, mosquitto, tls, tmp_path)
    async with running_gateway(config), commander(mosquitto) as cmd:
        answer = await cmd.send(
            write_topic(SETPOINT),
            orjson.dumps({"value": 42.5, "id": "r-1", "ts": format_ts(now_ms())}),
            response_topic="replies/hmi-1",
            correlation=b"\x00corr-7",
        )
        assert cmd.last.topic == "replies/hmi-1"
        assert cmd.last.properties.CorrelationData == b"\x00corr-7"
        assert answer == {"id": "r-1", "ok": True, "error": None, "tag": SETPOINT, "value": 42.5}
        assert simulator.plant.reading(SETPOINT).value == 42.5
        bare = await cmd.send(write_topic(RUNNING), b"true")
        assert cmd.last.topic == RESULT
        assert bare["ok"] is True
        assert bare["value"] is True
        assert (await cmd.send(write_topic(MODE), b'"manual"'))["value"] == "manual"
        assert (await cmd.send(write_topic(POSITION), b'{"value": 30}'))["value"] == 30
    assert simulator.write_log == [
        (SETPOINT, 42.5),
        (RUNNING, True),
        (MODE, "manual"),
        (POSITION, 30),
    ]


def stamped(offset_ms: int) -> Callable[[], bytes]:
    """A payload whose ts lies ``offset_ms`` from the moment it is sent, not from import."""
    return lambda: orjson.dumps({"value": 5.0, "ts": format_ts(now_ms() + offset_ms)})


REFUSALS: list[tuple[str, str, bytes | str | Callable[[], bytes], str]] = [
    ("not writable", "System1.Area1.Tank1.Temperature", b"20.0", "not in commands.writable"),
    ("unknown tag", "System1.Area1.Tank99.Setpoint", b"1.0", "unknown tag"),
    ("string into float", SETPOINT, b'{"value": "50"}', "takes a number"),
    ("float into int", POSITION, b'{"value": 30.5}', "whole number"),
    ("int into bool", RUNNING, b"1", "true or false"),
    ("infinity", SETPOINT, b'{"value": 1e999}', "malformed JSON"),
    ("malformed", SETPOINT, b'{"value": 5', "malformed JSON"),
    ("oversized", SETPOINT, b'{"value": "' + b"x" * 70_000 + b'"}', "payload too large"),
    (
        "too old",
        SETPOINT,
        stamped(-60_000),
        "too old",
    ),
    (
        "ts in the future",
        SETPOINT,
        stamped(60_000),
        "command ts is in the future",
    ),
    ("range", SETPOINT, b"150.0", "above the allowed maximum 100"),
    ("read-only in WinCC", LEVEL, b"5.0", "WinCC refused it (403)"),
]
DIALECT_REASONS = {
    "classic": {"read-only in WinCC": "WinCC refused it: PUT /tagManagement/Value/"},
    "unified": {"read-only in WinCC": "WinCC refused it: writeTagValues"},
}
"""Where a dialect answers otherwise: a write fails by the item's error code."""
ACK_REFUSED = "acknowledge is not offered by the classic WinCC REST service"


async def test_every_refusal_writes_nothing_and_answers(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(
        simulator, mosquitto, tls, tmp_path, ranges=[{"tags": "System1.*.*.Setpoint", "max": 100}]
    )
    before = {tag: simulator.plant.reading(tag).value for tag in (SETPOINT, POSITION, RUNNING)}
    reasons = DIALECT_REASONS.get(simulator.options.dialect, {})
    async with running_gateway(config), commander(mosquitto) as cmd:
        for case, tag, payload, reason in REFUSALS:
            answer = await cmd.send(write_topic(tag), payload() if callable(payload) else payload)
            assert answer["ok"] is False, case
            expected = reasons.get(case, reason)
            assert expected in answer["error"], (case, answer)
        # A duplicate id: the first executes, the second is refused.
        first = await cmd.send(write_topic(SETPOINT), b'{"value": 10.0, "id": "dup"}')
        second = await cmd.send(write_topic(SETPOINT), b'{"value": 11.0, "id": "dup"}')
    assert first["ok"] is True
    assert second == {
        "id": "dup",
        "ok": False,
        "error": "duplicate request id 'dup': already executed",
        "tag": SETPOINT,
        "value": None,
    }
    assert simulator.write_log == [(SETPOINT, 10.0)]
    assert simulator.plant.reading(POSITION).value == before[POSITION]
    assert simulator.plant.reading(RUNNING).value == before[RUNNING]


async def test_empty_allow_list_writes_nothing(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(simulator, mosquitto, tls, tmp_path, writable=[])
    async with running_gateway(config), commander(mosquitto) as cmd:
        answer = await cmd.send(write_topic(SETPOINT), b"1.0")
    assert answer["error"] == "tag is not in commands.writable"
    assert simulator.write_log == []


async def test_rate_limit_refuses_the_excess(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(simulator, mosquitto, tls, tmp_path, rate_limit=0.01, burst=2)
    async with running_gateway(config), commander(mosquitto) as cmd:
        answers = [await cmd.send(write_topic(SETPOINT), f"{v}.0") for v in (1, 2, 3)]
    assert [a["ok"] for a in answers] == [True, True, False]
    assert "rate limit" in answers[2]["error"]
    assert [value for _, value in simulator.write_log] == [1.0, 2.0]


async def test_the_allow_list_matches_levels_like_the_tag_lists(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """``*`` stays within one level in ``writable`` as in ``[[poll]] tags``: a pattern that
    resolves to no tag allows nothing, however the whole name would glob."""
    config = command_config(simulator, mosquitto, tls, tmp_path, writable=["System1.*.Setpoint"])
    config["poll"] = [{"name": "all", "interval": "1s", "tags": ["System1.Area1.**"]}]
    async with running_gateway(config), commander(mosquitto) as cmd:
        answer = await cmd.send(write_topic(SETPOINT), b"12.5")
    assert answer["ok"] is False
    assert answer["error"] == "tag is not in commands.writable"
    assert simulator.write_log == []


async def test_commands_that_cannot_run_in_time_expire_instead_of_running_late(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """A slow WinCC (1.5 s a request): of 30 commands sent within a second, each with a
    2 s MQTT 5 expiry, only those that can go out in time are written; every other one is
    answered at once or within the expiry, none is executed late."""
    config = command_config(simulator, mosquitto, tls, tmp_path, writable=[SETPOINT])
    config["poll"] = [{"name": "slow", "interval": "10s", "tags": [LEVEL]}]
    config["alarms"] = {"enabled": False}
    config["wincc"]["timeout"] = "5s"
    async with running_gateway(config), commander(mosquitto) as cmd:
        simulator.faults.latency_ms = 1500
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        for n in range(30):
            await cmd.publish(
                write_topic(SETPOINT), f"{n}.0", correlation=f"c{n}".encode(), expiry=2
            )
        answers = await cmd.answers_by_correlation(30, timeout=8.0)
        answered_within = loop.time() - sent_at
        simulator.faults.latency_ms = 0
    assert sorted(answers) == sorted(f"c{n}".encode() for n in range(30))
    assert all(len(each) == 1 for each in answers.values())
    ok = [n for n in range(30) if answers[f"c{n}".encode()][0]["ok"]]
    assert ok == [0]
    assert simulator.write_log == [(SETPOINT, 0.0)]
    refusals = {answers[f"c{n}".encode()][0]["error"].split(":")[0] for n in range(1, 30)}
    assert refusals <= {"expired", "busy"}, refusals
    assert answered_within < 8.0


async def test_commands_before_the_tag_table_is_resolved_are_refused_not_ready(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """While a slow WinCC is still being browsed, a write is refused ``not ready``, not
    ``unknown tag``; once resolved, the same write is executed."""
    config = command_config(simulator, mosquitto, tls, tmp_path, writable=[SETPOINT])
    simulator.faults.latency_ms = 1000
    async with running_gateway(config, wait=False) as gateway, commander(mosquitto) as cmd:
        await asyncio.wait_for(gateway.session.connected.wait(), 10)
        early = await cmd.send(write_topic(SETPOINT), b"7.0")
        assert not gateway.started.is_set()
        simulator.faults.latency_ms = 0
        await asyncio.wait_for(gateway.started.wait(), 15)
        later = await cmd.send(write_topic(SETPOINT), b"8.0")
    assert early["ok"] is False
    assert early["error"].startswith("not ready"), early
    assert later["ok"] is True
    assert simulator.write_log == [(SETPOINT, 8.0)]


def slow_write_config(sim: Simulator, broker: Mosquitto, tls: TlsFiles, tmp: Path):
    """Only the setpoint writable, one slow poll, no alarms: WinCC's latency falls on the
    commands, not on a poller that would mark WinCC down."""
    config = command_config(sim, broker, tls, tmp, writable=[SETPOINT])
    config["poll"] = [{"name": "slow", "interval": "30s", "tags": [LEVEL]}]
    config["alarms"] = {"enabled": False}
    config["wincc"]["timeout"] = "5s"
    return config


async def test_a_stop_waits_for_the_write_in_flight_and_answers_it(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """A stop lets the write already sent end and be answered; the command waiting behind
    it is refused, and a copy of the first one's id is refused while it runs."""
    config = slow_write_config(simulator, mosquitto, tls, tmp_path)
    async with commander(mosquitto) as cmd:
        async with running_gateway(config):
            simulator.faults.latency_ms = 1000
            await cmd.publish(write_topic(SETPOINT), b'{"value": 21.0, "id": "first"}')
            async with asyncio.timeout(10):
                await simulator.wait_for_request("PUT", SETPOINT)
            await cmd.publish(write_topic(SETPOINT), b'{"value": 24.0, "id": "behind"}')
            copy = await cmd.send(write_topic(SETPOINT), b'{"value": 21.0, "id": "first"}')
        # The gateway has stopped: the write it had sent ended and was answered first.
        messages = await cmd.answers.wait_for(lambda ms: len(ms) >= 3)
    by_id = {m.json()["id"]: m.json() for m in messages if m.json() != copy}
    assert copy["error"] == "duplicate request id 'first': the first is still being executed"
    assert by_id["first"] == {
        "id": "first",
        "ok": True,
        "error": None,
        "tag": SETPOINT,
        "value": 21.0,
    }
    assert by_id["behind"]["error"] == "not executed: the gateway is stopping"
    assert simulator.write_log == [(SETPOINT, 21.0)]


async def test_an_answer_lost_with_the_broker_goes_out_on_the_next_connection(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = slow_write_config(simulator, mosquitto, tls, tmp_path)
    v3 = aiomqtt.ProtocolVersion.V311  # a 3.1.1 session outlives the broker's restart
    async with subscribe(mosquitto, RESULT, protocol=v3, identifier="hmi", clean=False):
        pass
    async with running_gateway(config) as gateway:
        simulator.faults.latency_ms = 1000
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(write_topic(SETPOINT), b'{"value": 22.0, "id": "w1"}', qos=1)
        async with asyncio.timeout(10):
            await simulator.wait_for_request("PUT", SETPOINT)
        await mosquitto.stop()
        await mosquitto.start()
        async with subscribe(mosquitto, protocol=v3, identifier="hmi", clean=False) as answers:
            messages = await answers.wait_for(lambda ms: len(ms) >= 1, timeout=30)
        assert gateway.commands.results == {"ok": 1}
    assert messages[0].topic == RESULT
    assert messages[0].json()["id"] == "w1"
    assert messages[0].json()["ok"] is True
    assert simulator.write_log == [(SETPOINT, 22.0)]


async def test_a_connection_lost_after_the_write_was_sent_leaves_the_outcome_unknown(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = slow_write_config(simulator, mosquitto, tls, tmp_path)
    async with running_gateway(config) as gateway, commander(mosquitto) as cmd:
        simulator.faults.drop_rate = 1.0  # WinCC takes the request, the connection breaks
        answer = await cmd.send(write_topic(SETPOINT), b'{"value": 23.0, "id": "lost"}')
        simulator.faults.drop_rate = 0.0
        again = await cmd.send(write_topic(SETPOINT), b'{"value": 23.0, "id": "lost"}')
    assert answer["ok"] is False
    assert answer["error"].startswith("outcome unknown:"), answer
    assert "read the tag" in answer["error"]
    assert "not executed" not in answer["error"]
    assert again["error"] == "duplicate request id 'lost': already executed"
    assert gateway.commands.results == {"unknown": 1, "refused": 1}


async def test_a_full_queue_refuses_busy_at_once(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = slow_write_config(simulator, mosquitto, tls, tmp_path)
    count = MAX_WAITING + 10
    async with running_gateway(config), commander(mosquitto) as cmd:
        simulator.faults.latency_ms = 1500
        for n in range(count):
            await cmd.publish(write_topic(SETPOINT), f"{n}.5", correlation=f"c{n}".encode())
        answers = await cmd.answers_by_correlation(count, timeout=20)
    assert all(len(answers[f"c{n}".encode()]) == 1 for n in range(count))
    errors = [answers[f"c{n}".encode()][0]["error"] or "" for n in range(count)]
    assert errors[0] == ""
    assert sum(error.startswith("busy:") for error in errors) >= 9
    assert {error.split(":")[0] for error in errors[1:]} == {"busy", "expired"}, errors
    assert simulator.write_log == [(SETPOINT, 0.5)]


async def test_answers_never_go_to_the_gateways_own_topics(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(simulator, mosquitto, tls, tmp_path)
    own = [
        f"{PREFIX}/tags/{tag_path(SETPOINT)}",
        f"{PREFIX}/status",
        f"{PREFIX}/alarms/events",
        f"{PREFIX}/batch/fast",
        f"{PREFIX}/cmd/write/{tag_path(SETPOINT)}",
    ]
    async with running_gateway(config), commander(mosquitto) as cmd:
        for topic in own:
            answer = await cmd.send(write_topic(SETPOINT), b"3.0", response_topic=topic)
            assert cmd.last.topic == RESULT, topic
            assert answer["ok"] is False
            assert "the response topic is one of the gateway's own topics" in answer["error"]
    assert simulator.write_log == []


async def test_acknowledgements_outside_their_allow_list_are_refused(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    alarm_id = next(iter(simulator.plant.alarms))
    simulator.plant.raise_alarm(alarm_id, now_ms=now_ms())
    config = command_config(simulator, mosquitto, tls, tmp_path, acknowledge=[])
    async with running_gateway(config), commander(mosquitto) as cmd:
        answer = await cmd.send(alarm_topic(simulator, alarm_id, "cmd/ack"), b"")
    assert answer == {
        "id": None,
        "ok": False,
        "error": "alarm is not in commands.acknowledge",
        "alarm": alarm_id_of(simulator, alarm_id),
    }
    assert simulator.ack_log == []


async def test_commands_are_refused_not_queued_while_wincc_is_down(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(simulator, mosquitto, tls, tmp_path)

    def source_is(state: str):  # type: ignore[no-untyped-def]
        return lambda ms: bool(ms) and ms[-1].json().get("source") == state

    async with (
        subscribe(mosquitto, f"{PREFIX}/status") as status,
        running_gateway(config),
        commander(mosquitto) as cmd,
    ):
        await status.wait_for(source_is("up"))
        simulator.faults.down = True
        await status.wait_for(source_is("down"))
        answer = await cmd.send(write_topic(SETPOINT), b"12.0")
        simulator.faults.down = False
        await status.wait_for(source_is("up"))
    assert answer["ok"] is False
    assert "WinCC is unavailable" in answer["error"]
    assert simulator.write_log == []


async def test_mqtt311_clients_get_answers_on_the_result_topic(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = command_config(simulator, mosquitto, tls, tmp_path)
    config["mqtt"]["protocol"] = 311
    async with running_gateway(config), commander(mosquitto, v5=False) as cmd:
        ok = await cmd.send(write_topic(SETPOINT), b'{"value": 33.0, "id": "v3"}')
        refused = await cmd.send(write_topic(LEVEL), b"1")
    assert cmd.last.topic == RESULT
    assert ok == {"id": "v3", "ok": True, "error": None, "tag": SETPOINT, "value": 33.0}
    assert refused["ok"] is False
    assert simulator.write_log == [(SETPOINT, 33.0)]


async def test_ack_reaches_the_simulator_and_the_alarm_topic(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    plant = simulator.plant
    alarm_id = next(iter(plant.alarms))
    plant.raise_alarm(alarm_id, now_ms=now_ms())
    config = command_config(simulator, mosquitto, tls, tmp_path)
    state_topic = alarm_topic(simulator, alarm_id)
    published_id = alarm_id_of(simulator, alarm_id)
    classic = simulator.options.dialect == "classic"
    async with (
        subscribe(mosquitto, state_topic) as states,
        running_gateway(config),
        commander(mosquitto) as cmd,
    ):
        await states.wait_for(lambda ms: any(m.payload and not m.json()["acked"] for m in ms))
        answer = await cmd.send(
            alarm_topic(simulator, alarm_id, "cmd/ack"), b'{"id": "ack-1", "comment": "checked"}'
        )
        if not classic:
            await states.wait_for(lambda ms: any(m.payload and m.json()["acked"] for m in ms))
        unknown = await cmd.send(f"{PREFIX}/cmd/ack/9999999", b"")
        nested = await cmd.send(f"{PREFIX}/cmd/ack/a/b", b"")
    assert unknown["ok"] is False
    assert unknown["alarm"] == "9999999"
    assert nested["error"] == "the alarm id is exactly one topic level"
    if classic:  # the classic REST service offers no acknowledge: every ack is refused
        assert answer == {"id": "ack-1", "ok": False, "error": ACK_REFUSED, "alarm": published_id}
        assert unknown["error"] == ACK_REFUSED
        assert not plant.alarms[alarm_id].acked
        assert simulator.ack_log == []
        assert not any(m.payload and m.json()["acked"] for m in states.messages)
        return
    assert answer == {"id": "ack-1", "ok": True, "error": None, "alarm": published_id}
    assert plant.alarms[alarm_id].acked
    # WinCC Unified takes no comment with an acknowledgement
    comment = None if simulator.options.dialect == "unified" else "checked"
    assert simulator.ack_log == [(alarm_id, comment)]
    assert unknown["error"] == "unknown alarm on the WinCC server"


# Topic levels a sender can publish: MQTT forbids + and # in published topics, and the
# broker refuses NUL, control characters, surrogates and non-characters.
level = st.text(
    alphabet=st.characters(blacklist_characters="+#/", blacklist_categories=("Cs", "Cc")).filter(
        lambda c: (ord(c) & 0xFFFF) < 0xFFFE and not 0xFDD0 <= ord(c) <= 0xFDEF
    ),
    max_size=30,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(orjson.dumps),
    st.builds(lambda v: orjson.dumps({"value": v, "id": "p"}), json_values),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"value": "' + b"\xff" * 100 + b'"}'),
)
POLLED_READ_ONLY = [
    "System1.Area1.Tank1.Level",
    "System1.Area1.Tank1.Temperature",
]
"""Polled (``System1.Area1.Tank1.*``) but not in the fuzz's allow-list."""


def mutate(tag: str, how: int, extra: str) -> str:
    """A near miss of a valid write topic for ``tag``: case, levels added or dropped,
    escapes, wildcard characters (a topic the gateway is subscribed to, though)."""
    path = tag_path(tag)
    levels = path.split("/")
    variants = [
        path.upper(),
        path.lower(),
        path + "/",
        path + "/" + extra,
        "/".join(levels[:-1]),
        "/".join([*levels[:-1], extra]),
        path.replace("/Setpoint", "/%53etpoint"),
        path.replace("/Tank1/", "/Tank1//"),
        path.replace("/", ".", 1),
        "/" + path,
        path.replace("Setpoint", "Setpoint\u200b"),
        path.replace("Tank1", "Tank*"),
        path.replace("Tank1", "Tank?"),
        path.replace("/", "%2F"),
        tag,
    ]
    return f"{PREFIX}/cmd/write/" + variants[how % len(variants)]


hostile_topics = st.one_of(
    st.tuples(st.sampled_from(["write", "ack"]), st.lists(level, min_size=1, max_size=4)).map(
        lambda kind_levels: f"{PREFIX}/cmd/{kind_levels[0]}/" + "/".join(kind_levels[1])
    ),
    st.builds(mutate, st.just(SETPOINT), st.integers(0, 100), level),
    st.sampled_from(POLLED_READ_ONLY).map(write_topic),
)
valid_writes = st.floats(0, 100).map(lambda v: orjson.dumps({"value": v}))
response_topics = st.sampled_from(
    [
        None,
        "replies/fuzz",
        "replies/+",
        f"{PREFIX}/status",
        f"{PREFIX}/tags/{tag_path(SETPOINT)}",
        f"{PREFIX}/cmd/write/{tag_path(SETPOINT)}",
    ]
)
hostile = st.tuples(
    hostile_topics,
    st.one_of(payloads, valid_writes),
    response_topics,
    st.sampled_from([None, 1, 60]),
)


async def test_hostile_commands_never_write_or_acknowledge_and_are_answered_once(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """Arbitrary commands, near misses of valid topics, polled tags that are not writable
    and alarms that are not acknowledgeable, with MQTT 5 expiry and response topics (some
    the gateway's own), against a gateway whose allow-lists admit only the setpoint and one
    alarm, both excluded from generation: nothing may ever be written or acknowledged, and
    every command gets exactly one answer."""
    alarm_ids = sorted(simulator.plant.alarms)
    allowed_alarm = alarm_ids[0]
    config = command_config(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        writable=[SETPOINT],
        acknowledge=[alarm_id_of(simulator, allowed_alarm)],
    )
    not_allowed_acks = [alarm_topic(simulator, alarm_id, "cmd/ack") for alarm_id in alarm_ids[1:]]
    for alarm_id in alarm_ids[1:]:
        simulator.plant.raise_alarm(alarm_id, now_ms=now_ms())
    cases: list[tuple[str, bytes, str | None, int | None]] = []

    @settings(max_examples=150, suppress_health_check=list(HealthCheck), deadline=None)
    @given(
        st.one_of(
            hostile,
            st.tuples(st.sampled_from(not_allowed_acks), payloads, response_topics, st.just(None)),
        )
    )
    def collect(case: tuple[str, bytes, str | None, int | None]) -> None:
        topic = case[0]
        if topic in (write_topic(SETPOINT), alarm_topic(simulator, allowed_alarm, "cmd/ack")):
            return
        cases.append(case)

    collect()
    async with running_gateway(config) as gateway, commander(mosquitto) as cmd:
        for n, (topic, payload, response_topic, expiry) in enumerate(cases):
            await cmd.publish(
                topic,
                payload,
                response_topic=response_topic,
                correlation=f"fuzz-{n}".encode(),
                expiry=expiry,
            )
        answers = await cmd.answers_by_correlation(len(cases), timeout=30)
        # Still answering, and still writing what is allowed.
        ok = await cmd.send(write_topic(SETPOINT), b"1.5", correlation=b"last")
    commands = {f"fuzz-{n}".encode() for n in range(len(cases))}
    answered = {key for key in answers if key != b"last"}
    assert answered == commands
    for n, case in enumerate(cases):
        (answer,) = answers[f"fuzz-{n}".encode()]
        assert answer["ok"] is False, (case, answer)
        assert isinstance(answer["error"], str)
    assert ok["ok"] is True
    assert simulator.write_log == [(SETPOINT, 1.5)]
    assert simulator.ack_log == []
    assert gateway.commands.results == {"refused": len(cases), "ok": 1}
