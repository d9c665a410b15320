"""The MQTT boundary: the only package of the gateway that imports aiomqtt or paho.

Everything outside it hands over and receives plain values (``Message``, ``Inbound``,
topics, payloads, correlation data) and sees one error of its own, ``MqttUnavailable``.
"""
