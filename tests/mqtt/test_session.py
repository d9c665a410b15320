"""The session's edge: inbound MQTT messages leave it as plain values."""

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.session import inbound_from


def test_inbound_without_properties_and_with_mqtt5_properties() -> None:
    plain = inbound_from("p/cmd/write/a", b"1", None)
    assert plain.response_topic is None
    assert plain.arrival.expiry_s is None

    class Props:
        ResponseTopic = "app/replies"
        CorrelationData = b"\x01\x02"
        MessageExpiryInterval = 10
        UserProperty = (("client_id", "scada-hmi-3"),)

    inbound = inbound_from("p/cmd/write/a", b"1", Props())
    assert inbound.response_topic == "app/replies"
    assert inbound.correlation_data == b"\x01\x02"
    assert inbound.sender == "scada-hmi-3"
    assert inbound.arrival.expiry_s == 10


def test_inbound_reads_the_properties_of_a_paho_message() -> None:
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = "app/replies"
    properties.CorrelationData = b"\x07"
    properties.UserProperty = ("clientid", "hmi-1")
    inbound = inbound_from("p/cmd/ack/7", b"", properties)
    assert (inbound.response_topic, inbound.correlation_data) == ("app/replies", b"\x07")
    assert inbound.sender == "hmi-1"
    assert inbound.arrival.expiry_s is None
