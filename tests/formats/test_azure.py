"""Azure IoT Hub: the JSON formats' messages as device telemetry, direct methods as
commands for the command policy."""

from urllib.parse import parse_qs

import orjson
import pytest

from gateway.core.alarms import AlarmDiff
from gateway.core.models import Reading
from gateway.core.topics import TopicMap, escape_level
from gateway.errors import CommandRejected
from gateway.formats.azure import AzureMethods, AzureTelemetry
from gateway.formats.base import Route, Status
from gateway.formats.json_topics import BatchJson, PerTagJson

EVENTS = "devices/edge-01/messages/events/"


def telemetry(batch: bool = False) -> tuple[AzureTelemetry, TopicMap]:
    topics = TopicMap(["Line 1.Temp/Top"])
    common = {"prefix": "wincc/gw", "qos": 1, "retain": True, "topic_map": topics}
    inner = (
        BatchJson(**common, version="1", max_bytes=300)
        if batch
        else PerTagJson(**common, version="1")
    )
    return AzureTelemetry(inner, prefix="wincc/gw", device_id="edge-01", topic_map=topics), topics


def props(topic: str) -> dict[str, str]:
    assert topic.startswith(EVENTS)
    return {k: v[0] for k, v in parse_qs(topic[len(EVENTS) :]).items()}


def test_a_sample_goes_to_the_events_topic_with_its_tag_and_never_retained() -> None:
    output, _ = telemetry()
    [message] = output.samples(
        "g", [(Reading("Line 1.Temp/Top", 2.5, 192, 0), 7, True)], backfill=False
    )
    assert props(message.topic) == {
        "$.ct": "application/json;charset=utf-8",
        "$.ce": "utf-8",
        "topic": "tags/Line 1/Temp%2FTop",
        "tag": "Line 1.Temp/Top",
    }
    assert (message.retain, message.qos) == (False, 1)
    body = orjson.loads(message.payload)
    assert (body["value"], body["quality"], body["seq"]) == (2.5, 192, 7)


def test_status_will_and_batches_are_telemetry_too() -> None:
    output, _ = telemetry(batch=True)
    will = output.will(0)
    assert props(will.topic)["topic"] == "status"
    assert not will.retain
    [online] = output.on_connect(Status("online", 0, "up"))
    assert orjson.loads(online.payload)["state"] == "online"
    samples = [(Reading(f"T{n}", n, 192, 0), n, True) for n in range(20)]
    parts = output.samples("fast", samples, backfill=False)
    assert len(parts) > 1  # split below max_bytes like the plain batch format
    assert {props(p.topic)["topic"] for p in parts} == {"batch/fast"}
    assert output.alarms(AlarmDiff()) == []
    assert output.commands.filters == ("$iothub/methods/POST/#",)


def test_methods_route_and_split_into_the_commands_the_policy_judges() -> None:
    topics = TopicMap(["Line1.Setpoint"])
    methods = AzureMethods(topics)
    route = methods.route("$iothub/methods/POST/write/?$rid=5")
    assert route == Route("tag", "")
    [(target, payload)] = methods.split(route, b'{"tag": "Line1.Setpoint", "value": 3, "id": "a"}')
    assert topics.tag(target.target) == "Line1.Setpoint"
    request = methods.parse_write(payload)
    assert (request.value, request.request_id) == (3, "a")

    ack = methods.route("$iothub/methods/POST/ack/?$rid=6")
    assert ack is not None
    [(alarm, body)] = methods.split(ack, b'{"alarm": "A/1", "comment": "seen"}')
    assert alarm == Route("alarm", escape_level("A/1"))
    assert methods.parse_ack(body).comment == "seen"

    assert methods.route("$iothub/methods/POST/reboot/?$rid=7") == Route("control", "reboot")
    with pytest.raises(CommandRejected, match="unknown method 'reboot'"):
        methods.control("reboot", b"{}")
    assert methods.route("wincc/gw/cmd/write/x") is None


@pytest.mark.parametrize(
    "body",
    [b"[1]", b"{", b'{"value": 1}', b'{"tag": "x"}', b'{"tag": "x", "value": 1, "extra": 2}'],
)
def test_a_write_method_that_cannot_be_read_is_refused(body: bytes) -> None:
    methods = AzureMethods(TopicMap(["x"]))
    with pytest.raises(CommandRejected):
        methods.split(Route("tag", ""), body)


def test_the_answer_is_the_method_response_with_the_outcome_as_status() -> None:
    methods = AzureMethods(TopicMap())
    topic = "$iothub/methods/POST/write/?$rid=5"
    assert methods.reply_to(topic, "ok") == "$iothub/methods/res/200/?$rid=5"
    assert methods.reply_to(topic, "refused") == "$iothub/methods/res/400/?$rid=5"
    assert methods.reply_to(topic, "unknown") == "$iothub/methods/res/500/?$rid=5"
    assert methods.owns("devices/edge-01/messages/events/x")
