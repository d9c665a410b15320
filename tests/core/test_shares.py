from hypothesis import given
from hypothesis import strategies as st

from gateway.core.shares import command_subscriptions, share_group

FILTERS = ("wincc/edge-01/cmd/write/#", "wincc/edge-01/cmd/ack/#")


def test_the_group_is_one_level_named_after_the_prefix() -> None:
    assert share_group("wincc/edge-01") == "wincc-gateway.wincc_edge-01"
    assert share_group("a/+/#/b c") == "wincc-gateway.a_____b_c"


@given(st.text(min_size=1))
def test_the_group_never_holds_a_separator_or_wildcard(prefix: str) -> None:
    group = share_group(prefix)
    assert not set(group) & {"/", "+", "#"}
    assert group == share_group(prefix)  # both instances derive the same


def test_a_pair_on_mqtt5_shares_its_command_filters() -> None:
    group = share_group("wincc/edge-01")
    filters, said = command_subscriptions(FILTERS, group, mqtt5=True, broker_shares=True)
    assert filters == (
        "$share/wincc-gateway.wincc_edge-01/wincc/edge-01/cmd/write/#",
        "$share/wincc-gateway.wincc_edge-01/wincc/edge-01/cmd/ack/#",
    )
    assert said == "commands shared with the other instance: group wincc-gateway.wincc_edge-01"


def test_sparkplug_commands_are_shared_and_platform_topics_are_not() -> None:
    filters = ("spBv1.0/plant/NCMD/edge", "spBv1.0/plant/DCMD/edge/+", "$iothub/methods/POST/#")
    shared, _ = command_subscriptions(filters, "g", mqtt5=True, broker_shares=True)
    assert shared == (
        "$share/g/spBv1.0/plant/NCMD/edge",
        "$share/g/spBv1.0/plant/DCMD/edge/+",
        "$iothub/methods/POST/#",
    )


def test_plain_without_a_pair_on_mqtt311_or_where_the_broker_has_none() -> None:
    assert command_subscriptions(FILTERS, None, mqtt5=True, broker_shares=True) == (FILTERS, None)
    filters, said = command_subscriptions(FILTERS, "g", mqtt5=False, broker_shares=True)
    assert filters == FILTERS
    assert said is not None
    assert said.startswith("commands subscribed plainly, not shared with the other instance")
    assert "(MQTT 3.1.1 has no shared subscriptions)" in said
    filters, said = command_subscriptions(FILTERS, "g", mqtt5=True, broker_shares=False)
    assert filters == FILTERS
    assert said is not None
    assert "(the broker has no shared subscriptions (its CONNACK says so))" in said
