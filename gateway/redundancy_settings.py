"""``[redundancy]``: two gateway instances for one plant, one active and one standby.

Apart from ``gateway.config`` to keep each module to one concern.
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field, field_validator

from gateway.core.topics import is_topic_text
from gateway.section import Section
from gateway.units import Duration


class RedundancySettings(Section):
    """[redundancy]: a standby gateway that takes over when the active one dies."""

    role: Literal["active", "auto"] = Field(
        "active",
        description='"active": this gateway is the only one and always polls; "auto": one '
        "of two instances with the same topic_prefix, the other a standby. Exactly one is "
        "active, decided through the broker: the standby polls and writes nothing and "
        "takes over when the active one's status says offline (its will, or a clean "
        "stop), continuing every tag's seq from the broker's retained messages.",
    )
    takeover: Duration = Field(
        10.0,
        ge=3,
        description='With role = "auto": longest time from the active instance losing the '
        "broker to the standby taking over. The MQTT keepalive is derived from it (two "
        "thirds, in whole seconds), so that an active instance cut off from the broker "
        "stops polling and writing before the broker sends its will.",
    )
    instance: str | None = Field(
        None,
        min_length=1,
        description="Name of this instance, unique within the pair (default: the host "
        "name); its MQTT client id is mqtt.client_id-instance.",
        examples=["edge-01a"],
    )

    @field_validator("instance")
    @classmethod
    def _instance_is_a_level(cls, instance: str | None) -> str | None:
        if instance is not None and (not is_topic_text(instance) or "/" in instance):
            raise ValueError("the instance name is one topic level: no + / # or controls")
        return instance

    @property
    def name(self) -> str:
        """This instance's name: ``instance``, else the host name."""
        return self.instance or socket.gethostname()

    @property
    def keepalive(self) -> int:
        """The MQTT keepalive of an instance of a pair, in whole seconds (brokers count in
        seconds): the broker sends the will after 1.5 keepalives of silence, the gateway
        gives the link up within 1.25."""
        return max(1, int(self.takeover / 1.5))
