"""Benchmark of the gateway against its simulator and a real mosquitto: ``python -m bench``.

Every figure is measured end to end (simulator -> gateway -> broker -> subscriber) on one
machine, next to reference rates of plain MQTT clients on the same broker, so a result
reads as "the gateway delivers X samples/s, Y % of what mosquitto_pub does here".
"""
