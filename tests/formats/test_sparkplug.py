"""The Sparkplug B format's pure parts, decoded by pysparkplug (a decoder we did not write):
the encoder, seq and bdSeq numbering, historical marking, births, aliases, quality
properties, the durable state and the config. End to end over a broker:
tests/test_sparkplug.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NCmd, NDeath
from pysparkplug._protobuf import Payload as RawPayload

from gateway.buffer.store import Message
from gateway.config import GatewaySettings, load_settings
from gateway.core.alarms import AlarmDiff, AlarmTransition
from gateway.core.models import Alarm, Reading, TagType, Value
from gateway.core.topics import TopicMap
from gateway.errors import CommandRejected, ConfigError
from gateway.formats import build_format
from gateway.formats import sparkplug_codec as codec
from gateway.formats.base import Current, FormatContext, Route, Status, Watched
from gateway.formats.sparkplug import SparkplugNode, sparkplug_quality
from gateway.formats.sparkplug_state import SparkplugState

GOOD = 128
TYPES = {
    "S.A.Level": TagType.FLOAT,
    "S.A.Count": TagType.INT,
    "S.A.Run": TagType.BOOL,
    "S.A.Mode": TagType.STRING,
    "S.A.Blob": TagType.UNKNOWN,
}
VALUES: dict[str, Value] = {
    "S.A.Level": 1.5,
    "S.A.Count": -7,
    "S.A.Run": True,
    "S.A.Mode": "auto",
    "S.A.Blob": {"a": [1, 2]},
}
UP = Status("online", 0, "up")


def node(tmp_path: Path, current: dict[str, Current] | None = None, **kw: Any) -> SparkplugNode:
    known = current if current is not None else {n: (v, GOOD, True) for n, v in VALUES.items()}
    return SparkplugNode(
        group_id="plant",
        edge_node_id="edge1",
        device=kw.get("device", "wincc1"),
        state=SparkplugState(tmp_path / "state.json"),
        topic_map=TopicMap(),
        tag_types=TYPES,
        current=known.get,
        result_topic="p/cmd/result",
    )


def sent(fmt: SparkplugNode, messages: list[Message]) -> list[Message]:
    """As the session sends them: each finished at send time."""
    return [fmt.finish(m) for m in messages]


def test_encoder_output_is_what_the_specification_schema_decodes() -> None:
    props = codec.property_set([("Quality", codec.INT32, 500), ("WinCC Quality", codec.INT32, 68)])
    metrics = [
        codec.metric(name="a/b", alias=3, datatype=codec.DOUBLE, value=2.25, timestamp=5),
        codec.metric(alias=2**40, datatype=codec.INT64, value=-1, timestamp=6, with_datatype=False),
        codec.metric(name="n", datatype=codec.INT64, value=None, timestamp=7, properties=props),
        codec.metric(name="s", datatype=codec.STRING, value="ü", timestamp=8, historical=True),
        codec.metric(name="b", datatype=codec.BOOLEAN, value=False, timestamp=9),
        codec.metric(name="x", datatype=codec.DOUBLE, value="not a number", timestamp=9),
    ]
    raw = RawPayload.FromString(codec.with_seq(codec.payload(1_700_000_000_000, metrics), 255))
    assert (raw.timestamp, raw.seq) == (1_700_000_000_000, 255)
    first, second, null, text, flag, wrong = raw.metrics
    assert (first.name, first.alias, first.datatype, first.double_value) == ("a/b", 3, 10, 2.25)
    assert (second.HasField("name"), second.HasField("datatype")) == (False, False)
    assert (second.alias, second.long_value) == (2**40, 2**64 - 1)  # two's complement
    assert null.is_null and null.WhichOneof("value") is None
    assert list(null.properties.keys) == ["Quality", "WinCC Quality"]
    assert [(v.type, v.int_value) for v in null.properties.values] == [(3, 500), (3, 68)]
    assert (text.string_value, text.is_historical) == ("ü", True)
    assert flag.HasField("boolean_value") and not flag.boolean_value
    assert wrong.is_null  # a value that does not fit its datatype is null, not garbage


def test_seq_is_appended_and_historical_set_without_decoding_metrics() -> None:
    body = codec.payload(42, [codec.metric(alias=1, datatype=codec.INT64, value=5, timestamp=1)])
    assert codec.created_ms(body) == 42
    raw = RawPayload.FromString(codec.with_seq(codec.as_historical(body), 7))
    assert (raw.seq, raw.metrics[0].is_historical, raw.metrics[0].long_value) == (7, True, 5)


def test_births_declare_every_metric_with_alias_datatype_and_current_value(
    tmp_path: Path,
) -> None:
    fmt = node(tmp_path)
    fmt.will(0)
    assert fmt.catalog({"fast": list(VALUES)[:3], "slow": list(VALUES)[3:]})  # new tags: births
    assert fmt.catalog({"fast": list(VALUES)[:3], "slow": list(VALUES)[3:]}) == []  # unchanged
    nbirth, dbirth = sent(fmt, fmt.on_connect(UP))
    assert nbirth.topic == "spBv1.0/plant/NBIRTH/edge1"
    assert dbirth.topic == "spBv1.0/plant/DBIRTH/edge1/wincc1"
    assert (nbirth.qos, nbirth.retain, dbirth.qos, dbirth.retain) == (0, False, 0, False)
    born = NBirth.decode(nbirth.payload)
    assert born.seq == 0
    by_name = {m.name: m for m in born.metrics}
    assert by_name["bdSeq"].value == 0 and by_name["bdSeq"].datatype == DataType.INT64
    assert by_name["Node Control/Rebirth"].value is False
    device = DBirth.decode(dbirth.payload)
    assert device.seq == 1
    metrics = {m.name: m for m in device.metrics}
    assert set(metrics) == {"S/A/Level", "S/A/Count", "S/A/Run", "S/A/Mode", "S/A/Blob"}
    node_aliases = {m.alias for m in born.metrics if m.alias is not None}
    assert len(node_aliases) == 2  # Gateway/WinCC and Gateway/Buffer Depth, sent in NDATA
    assert len({m.alias for m in device.metrics} | node_aliases) == 7
    assert [(metrics[n].datatype, metrics[n].value) for n in metrics] == [
        (DataType.DOUBLE, 1.5),
        (DataType.INT64, -7),
        (DataType.BOOLEAN, True),
        (DataType.STRING, "auto"),
        (DataType.STRING, '{"a":[1,2]}'),
    ]
    assert all(m.timestamp for m in device.metrics)


def test_data_goes_by_alias_with_quality_properties_on_not_good_samples(tmp_path: Path) -> None:
    fmt = node(tmp_path)
    fmt.catalog({"fast": list(VALUES)})
    fmt.will(0)
    births = sent(fmt, fmt.on_connect(UP))
    dbirth = DBirth.decode(births[1].payload)
    samples = [
        (Reading("S.A.Level", 2.5, GOOD, 1000), 1, True),
        (Reading("S.A.Count", 3, 0x08, 1001), 1, False),
    ]
    (message,) = sent(fmt, fmt.samples("fast", samples, backfill=False))
    assert message.topic == "spBv1.0/plant/DDATA/edge1/wincc1"
    raw = RawPayload.FromString(message.payload)
    assert [m.HasField("name") or m.HasField("datatype") for m in raw.metrics] == [False, False]
    assert not raw.metrics[0].HasField("properties")
    props = raw.metrics[1].properties
    assert dict(zip(props.keys, [v.int_value for v in props.values], strict=True)) == {
        "Quality": 0,
        "WinCC Quality": 8,
    }
    data = DData.decode(message.payload, birth=dbirth)
    assert data.seq == 2
    assert [(m.name, m.value, m.timestamp, m.is_historical) for m in data.metrics] == [
        ("S/A/Level", 2.5, 1000, False),
        ("S/A/Count", 3, 1001, False),
    ]
    assert (sparkplug_quality(0x44), sparkplug_quality(0xC0)) == (500, 192)


def test_seq_wraps_after_255_and_nbirth_resets_it_while_ndeath_has_none(tmp_path: Path) -> None:
    fmt = node(tmp_path)
    fmt.catalog({"fast": ["S.A.Level"]})
    will = fmt.will(0)
    births = sent(fmt, fmt.on_connect(UP))
    reading = [(Reading("S.A.Level", 1.0, GOOD, 5), 1, True)]
    data = [fmt.finish(fmt.samples("fast", reading, backfill=False)[0]) for _ in range(300)]
    seqs = [RawPayload.FromString(m.payload).seq for m in births + data]
    assert seqs == [n % 256 for n in range(302)]
    assert fmt.finish(will) == will and not RawPayload.FromString(will.payload).HasField("seq")
    assert RawPayload.FromString(sent(fmt, fmt.on_connect(UP))[0].payload).seq == 0


def test_bd_seq_rises_per_connection_across_restarts_and_wraps(tmp_path: Path) -> None:
    first = node(tmp_path)
    wills = [NDeath.decode(first.will(0).payload) for _ in range(3)]
    assert [w.bd_seq_metric.value for w in wills] == [0, 1, 2]
    nbirth = NBirth.decode(sent(first, first.on_connect(UP))[0].payload)
    assert {m.name: m.value for m in nbirth.metrics}["bdSeq"] == 2  # the same as its will
    leave = first.on_leave(Status("offline", 0, "up"))
    assert leave.topic == "spBv1.0/plant/NDEATH/edge1" and (leave.qos, leave.retain) == (1, False)
    assert NDeath.decode(leave.payload).bd_seq_metric.value == 2
    state = SparkplugState(tmp_path / "state.json")
    state.bd_seq = 254
    state.save()
    again = node(tmp_path)  # a restart
    assert [NDeath.decode(again.will(0).payload).bd_seq_metric.value for _ in range(2)] == [255, 0]


def test_aliases_are_kept_across_restarts_and_new_tags_get_new_ones(tmp_path: Path) -> None:
    fmt = node(tmp_path)
    fmt.catalog({"fast": ["S.A.Level", "S.A.Run"]})
    before = dict(SparkplugState(tmp_path / "state.json").metrics)
    again = node(tmp_path)
    assert again.catalog({"fast": ["S.A.Mode", "S.A.Level", "S.A.Run"]})  # a new tag: rebirth
    after = SparkplugState(tmp_path / "state.json").metrics
    assert {n: after[n] for n in before} == before
    assert after["S.A.Mode"][0] not in {alias for alias, _ in before.values()}


def test_a_damaged_state_file_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_bytes(b"{not json")
    assert NDeath.decode(node(tmp_path).will(0).payload).bd_seq_metric.value == 0


def test_data_from_before_the_connection_goes_out_historical(tmp_path: Path) -> None:
    fmt = node(tmp_path)
    fmt.catalog({"fast": ["S.A.Level"]})
    reading = [(Reading("S.A.Level", 1.0, GOOD, 5), 1, True)]
    (made,) = fmt.samples("fast", reading, backfill=False)
    early = Message(made.topic, _recreated(made.payload, 1), 0, False)  # buffered long ago
    fmt.will(0)
    sent(fmt, fmt.on_connect(UP))
    (live,) = fmt.samples("fast", reading, backfill=False)
    (archived,) = fmt.samples("fast", reading, backfill=True)
    flags = [
        RawPayload.FromString(fmt.finish(m).payload).metrics[0].is_historical
        for m in (early, live, archived)
    ]
    assert flags == [True, False, True]


def _recreated(body: bytes, created: int) -> bytes:
    """The same payload, made at ``created``."""
    rest = b"".join(body[start:end] for field, _, start, end in codec.fields(body) if field != 1)
    return b"\x08" + codec.varint(created) + rest


def test_source_down_kills_the_devices_and_up_gives_birth_again(tmp_path: Path) -> None:
    fmt = node(tmp_path, device=None)
    fmt.catalog({"fast": ["S.A.Level"], "slow": ["S.A.Run"]})
    fmt.will(0)
    sent(fmt, fmt.on_connect(UP))
    down = sent(fmt, fmt.on_source(Status("online", 0, "down")))
    assert [m.topic.split("/", 2)[2] for m in down] == [
        "NDATA/edge1",
        "DDEATH/edge1/fast",
        "DDEATH/edge1/slow",
    ]
    assert [RawPayload.FromString(m.payload).seq for m in down] == [3, 4, 5]
    up = sent(fmt, fmt.on_source(Status("online", 0, "up")))
    assert [m.topic.split("/")[2] for m in up] == ["NDATA", "DBIRTH", "DBIRTH"]
    link, depth = RawPayload.FromString(up[0].payload).metrics
    assert (link.HasField("name"), link.HasField("alias"), link.string_value) == (False, True, "up")
    assert (depth.HasField("name"), depth.long_value) == (False, 0)
    fmt.on_source(Status("online", 0, "unknown"))
    assert [m.topic.split("/")[2] for m in fmt.on_source(UP)] == ["NDATA"]  # born already


def test_the_buffer_depth_is_born_with_the_node_and_said_again_only_when_it_changed(
    tmp_path: Path,
) -> None:
    fmt = node(tmp_path)
    fmt.catalog({"fast": ["S.A.Level"]})
    fmt.will(0)
    nbirth, _ = sent(fmt, fmt.on_connect(Status("online", 0, "up", buffered=42)))
    born = {m.name: m for m in NBirth.decode(nbirth.payload).metrics}
    depth = born["Gateway/Buffer Depth"]
    assert (depth.datatype, depth.value) == (DataType.UINT64, 42)
    assert fmt.on_tick(Status("online", 0, "up", buffered=42)) == []  # said already
    (ndata,) = sent(fmt, fmt.on_tick(Status("online", 0, "up", buffered=0)))
    assert ndata.topic == "spBv1.0/plant/NDATA/edge1"
    raw = RawPayload.FromString(ndata.payload)
    (metric,) = raw.metrics
    assert (metric.alias, metric.HasField("name"), metric.long_value) == (depth.alias, False, 0)
    assert raw.seq == 2 and metric.timestamp > 0
    assert fmt.on_tick(Status("online", 0, "up", buffered=0)) == []


def test_commands_are_subscribed_owned_and_not_answered(tmp_path: Path) -> None:
    layout = node(tmp_path).commands
    assert layout.filters == ("spBv1.0/plant/NCMD/edge1", "spBv1.0/plant/DCMD/edge1/+")
    assert layout.route("spBv1.0/plant/NCMD/edge1") == Route("control", "node")
    assert layout.route("spBv1.0/plant/DCMD/edge1/wincc1") == Route("tag", "wincc1")
    assert layout.route("spBv1.0/plant/DCMD/edge2/wincc1") is None
    assert layout.owns("spBv1.0/plant/DDATA/edge1/wincc1")
    assert not layout.owns("spBv1.0/plant/DDATA/edge2/wincc1")
    assert not layout.owns("p/cmd/result")
    assert layout.answers is False
    for garbage in (b"\xff\xff", b"", b"\x12\x05ab"):
        with pytest.raises(CommandRejected):
            layout.split(Route("tag", "wincc1"), garbage)
    with pytest.raises(CommandRejected):
        layout.parse_ack(b"")


def test_rebirth_ncmd_is_answered_with_nbirth_of_the_same_bdseq_and_every_dbirth(
    tmp_path: Path,
) -> None:
    fmt = node(tmp_path, device=None)
    bd_seq = int(NDeath.decode(fmt.will(0).payload).bd_seq_metric.value)  # type: ignore[arg-type]
    sent(fmt, fmt.on_connect(UP))
    fmt.catalog({"fast": list(VALUES)[:3], "slow": list(VALUES)[3:]})
    reading = [(Reading("S.A.Level", 2.0, GOOD, 1), 1, True)]
    assert [m.topic for m in sent(fmt, fmt.samples("fast", reading, backfill=False))] == [
        "spBv1.0/plant/DDATA/edge1/fast"
    ]
    ncmd = NCmd(5, (Metric(5, "Node Control/Rebirth", DataType.BOOLEAN, value=True),)).encode()
    layout = fmt.commands
    ((route, metric),) = layout.split(Route("control", "node"), ncmd)
    assert route == Route("control", "Node Control/Rebirth")
    births = sent(fmt, layout.control(route.target, metric))
    assert [m.topic for m in births] == [
        "spBv1.0/plant/NBIRTH/edge1",
        "spBv1.0/plant/DBIRTH/edge1/fast",
        "spBv1.0/plant/DBIRTH/edge1/slow",
    ]
    assert [RawPayload.FromString(m.payload).seq for m in births] == [0, 1, 2]
    metrics = NBirth.decode(births[0].payload).metrics
    assert next(m.value for m in metrics if m.name == "bdSeq") == bd_seq
    assert len(DBirth.decode(births[1].payload).metrics) == 3

    refused = NCmd(5, (Metric(5, "Node Control/Rebirth", DataType.BOOLEAN, value=False),))
    ((route, metric),) = layout.split(Route("control", "node"), refused.encode())
    with pytest.raises(CommandRejected, match="must be true"):
        layout.control(route.target, metric)
    other = NCmd(5, (Metric(5, "Node Control/Reboot", DataType.BOOLEAN, value=True),))
    ((route, metric),) = layout.split(Route("control", "node"), other.encode())
    with pytest.raises(CommandRejected, match="unknown node control"):
        layout.control(route.target, metric)


def test_dcmd_is_one_write_per_metric_by_alias_or_name_typed_and_timestamped(
    tmp_path: Path,
) -> None:
    topics = TopicMap()
    fmt = SparkplugNode(
        group_id="plant",
        edge_node_id="edge1",
        device="wincc1",
        state=SparkplugState(tmp_path / "state2.json"),
        topic_map=topics,
        tag_types=TYPES,
        current=lambda name: None,
        result_topic="p/cmd/result",
    )
    _, device_birth = sent(fmt, fmt.catalog({"fast": list(VALUES)}))
    birth = DBirth.decode(device_birth.payload)
    alias = {m.name: m.alias for m in birth.metrics}
    raw = RawPayload(timestamp=1_000)
    by_name = raw.metrics.add(name=topics.path("S.A.Level"), timestamp=900, datatype=10)
    by_name.double_value = 2.5
    count = raw.metrics.add(alias=alias[topics.path("S.A.Count")])  # alias only: no type, no ts
    count.long_value = 2**64 - 3
    run = raw.metrics.add(alias=alias[topics.path("S.A.Run")], datatype=11, timestamp=950)
    run.boolean_value = True
    raw.metrics.add(alias=999, datatype=11).boolean_value = True  # no metric of this device
    layout = fmt.commands
    parts = layout.split(Route("tag", "wincc1"), raw.SerializeToString())
    targets = [route.target for route, _ in parts]
    assert targets[:3] == [topics.path(n) for n in ("S.A.Level", "S.A.Count", "S.A.Run")]
    assert topics.tag(targets[3]) is None
    writes = [layout.parse_write(payload) for _, payload in parts[:3]]
    assert [(w.value, w.ts_ms, w.request_id) for w in writes] == [
        (2.5, 900, None),
        (-3, 1_000, None),
        (True, 950, None),
    ]
    elsewhere = layout.split(Route("tag", "other-device"), raw.SerializeToString())
    assert all(topics.tag(route.target) is None for route, _ in elsewhere)
    null = RawPayload(timestamp=1)
    null.metrics.add(alias=alias[topics.path("S.A.Level")], is_null=True)
    ((_, payload),) = layout.split(Route("tag", "wincc1"), null.SerializeToString())
    with pytest.raises(CommandRejected, match="no value"):
        layout.parse_write(payload)


def test_the_table_builds_sparkplug_from_the_config(tmp_path: Path) -> None:
    settings = GatewaySettings(
        mqtt={"payload": "sparkplug"},
        sparkplug={"group_id": "plant", "edge_node_id": "edge1"},
        buffer={"path": str(tmp_path / "buffer.db")},
        wincc={"url": "https://scada-1.example:8443"},
    )
    fmt = build_format(FormatContext(settings))
    assert fmt.per_read
    assert fmt.will(0).topic == "spBv1.0/plant/NDEATH/edge1"
    assert (tmp_path / "buffer.db.sparkplug.json").exists()
    fmt.catalog({"fast": ["S.A.Level"]})
    assert [m.topic for m in fmt.on_connect(UP)][1] == "spBv1.0/plant/DBIRTH/edge1/scada-1.example"


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({}, "sparkplug.group_id and sparkplug.edge_node_id: required"),
        ({"group_id": "a/b", "edge_node_id": "e"}, "sparkplug.group_id: a Sparkplug id"),
        ({"group_id": "a", "edge_node_id": "e#"}, "sparkplug.edge_node_id: a Sparkplug id"),
        ({"group_id": "a", "edge_node_id": "e", "host_id": "+"}, "sparkplug.host_id"),
    ],
)
def test_sparkplug_ids_are_required_and_checked(
    tmp_path: Path, section: dict[str, str], error: str
) -> None:
    config = tmp_path / "gateway.toml"
    lines = ['[mqtt]\npayload = "sparkplug"\n[sparkplug]']
    lines += [f'{key} = "{value}"' for key, value in section.items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert any(error in problem for problem in caught.value.problems)


def test_alarms_are_not_published_and_the_log_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fmt = node(tmp_path)
    came = Alarm("A/1", "T", "hot", 1, "came", False, 1_000, None, None)
    diff = AlarmDiff([came], [], [AlarmTransition("came", came, 1_000)])
    assert fmt.alarms(diff) == fmt.alarms(diff) == []
    assert [r.getMessage() for r in caplog.records].count(
        "alarms are not published with mqtt.payload = sparkplug; set alarms.enabled = false "
        "to stop polling them"
    ) == 1


def test_messages_of_another_format_or_node_left_in_the_buffer_go_as_they_are(
    tmp_path: Path,
) -> None:
    fmt = node(tmp_path)
    fmt.will(0)
    sent(fmt, fmt.on_connect(UP))
    json_sample = Message("wincc/gateway/tags/S/A/Level", b'{"value": 1}', 1, True)
    other_node = Message("spBv1.0/plant/DDATA/edge2/wincc1", b"\x08\x01", 0, False)
    other_group = Message("spBv1.0/plant2/DDATA/edge1/wincc1", b"\x08\x01", 0, False)
    assert fmt.finish(json_sample) == json_sample
    assert fmt.finish(other_node) == other_node
    assert fmt.finish(other_group) == other_group
    damaged = Message("spBv1.0/plant/DDATA/edge1/wincc1", b"\xff", 0, False)
    assert RawPayload.FromString(fmt.finish(damaged).payload[1:]).seq == 1  # sent, numbered


def test_a_primary_host_holds_births_until_online_and_a_newer_offline_makes_the_node_leave(
    tmp_path: Path,
) -> None:
    fmt = SparkplugNode(
        group_id="plant",
        edge_node_id="edge1",
        device="wincc1",
        state=SparkplugState(tmp_path / "state.json"),
        topic_map=TopicMap(),
        tag_types=TYPES,
        current=lambda name: None,
        result_topic="p/cmd/result",
        host_id="scada",
    )
    state = "spBv1.0/STATE/scada"
    assert fmt.watched == (state,)
    fmt.will(0)
    assert fmt.on_connect(UP) == [] and fmt.holding
    assert fmt.catalog({"fast": list(VALUES)}) == []  # recorded, born once the host is there
    assert fmt.on_source(Status("online", 0, "down")) == []
    assert fmt.observe("spBv1.0/plant/NCMD/edge1", b"") is None  # a command, not watched
    offline = fmt.observe(state, b'{"online": false, "timestamp": 10}')
    assert offline == Watched() and fmt.holding
    assert fmt.observe(state, b"OFFLINE") == Watched()  # Sparkplug 2 text: ignored
    online = fmt.observe(state, b'{"online": true, "timestamp": 20}')
    assert online is not None and not fmt.holding
    assert [m.topic.split("/")[2] for m in online.publish] == ["NBIRTH", "DBIRTH", "DDEATH"]
    assert fmt.observe(state, b'{"online": false, "timestamp": 19}') == Watched()  # older
    assert fmt.observe(state, b'{"online": false, "timestamp": 20}') == Watched(leave=True)
    assert fmt.holding
    fmt.will(0)
    assert fmt.on_connect(UP) == []  # a new connection waits for the STATE again
    again = fmt.observe(state, b'{"online": true, "timestamp": 30}')
    assert again is not None and again.publish[0].topic == "spBv1.0/plant/NBIRTH/edge1"
