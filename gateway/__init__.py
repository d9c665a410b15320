"""wincc-gateway: polls Siemens WinCC over HTTPS and publishes to MQTT."""

__version__ = "0.1.0"
