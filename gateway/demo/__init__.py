"""``wincc-gateway demo``: the product working on loopback with one command, watched live.

``run`` wires simulator, broker, gateway and view together and stops them in order;
``broker`` is the embedded MQTT broker and the subscriber; ``view`` shows what it received.
"""
