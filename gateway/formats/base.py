"""What an output format decides, so the rest of the gateway never asks which one is set.

A format owns the gateway's side of the broker: the topic layout, how samples, alarms and
the status are encoded, the will, what goes out on every connect, and which inbound topics
are commands and how their payloads read. The sinks, the alarm poller, the MQTT session and
the command service take one and call it; ``gateway.formats`` has the table of formats that
``mqtt.payload`` chooses from.

Most formats encode a message once, when it is committed to the buffer, and the buffer
stores the finished bytes. A format that numbers its messages per connection, or must send
something before the buffered data after each reconnect, stores what it needs instead and
completes each message in ``finish`` as it is sent (a resent message is finished anew on
the next connection, and the session finishes the format's own messages too), sends what
must come first from ``on_connect``, and what must precede the data of newly known tags
(births) from ``catalog``.

A format may also keep the buffered data back on a connection (``holding``) until a
message on a topic it watches (``watched``, ``observe``) releases it, or makes the session
leave and connect again: a Sparkplug node waits for its primary host that way. Commands
to the format itself (``control`` routes, such as a Sparkplug rebirth) are answered with
messages of its own, which the session publishes ahead of the buffered data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from gateway.buffer.store import Message
from gateway.core.alarms import AlarmDiff
from gateway.core.commands import AckRequest, WriteRequest
from gateway.core.models import Reading, TagType, Value
from gateway.core.topics import TopicMap

if TYPE_CHECKING:
    from gateway.config import GatewaySettings

Sample = tuple[Reading, int, bool]
"""A decided sample: the reading, its seq, and whether its quality counts as good."""

Current = tuple[Value, int, bool]
"""A tag's last published sample: value, quality, and whether that quality counts as good."""


def _nothing_published(name: str) -> Current | None:
    return None


@dataclass(slots=True, frozen=True)
class FormatContext:
    """What a format may know of the gateway: the settings, the topic of each tag, the
    type of each tag (filled in once the tag lists are resolved), and each tag's last
    published sample (for births that declare current values)."""

    settings: GatewaySettings
    topic_map: TopicMap = field(default_factory=TopicMap)
    tag_types: Mapping[str, TagType] = field(default_factory=dict)
    current: Callable[[str], Current | None] = _nothing_published


CommandKind = Literal["tag", "alarm"]
"""What a command asks of WinCC: a tag write or an alarm acknowledgement."""

RouteKind = Literal["tag", "alarm", "control"]
"""A command for WinCC, or ``control``: one for the output format itself, which never
reaches WinCC (Sparkplug's rebirth request); the format answers it with messages of its
own, published ahead of the buffered data."""


@dataclass(slots=True, frozen=True)
class Status:
    """What the gateway says about itself: ``online``/``offline`` since when, the state
    of its WinCC source (``up``, ``down`` or ``unknown``), and how many messages its
    buffer holds."""

    state: Literal["online", "offline"]
    since_ms: int
    source: str | None = None
    buffered: int = 0


@dataclass(slots=True, frozen=True)
class Route:
    """Where an inbound command points: a tag write, an alarm acknowledgement or a control
    of the format, and the target as it stands in the topic or payload (a tag's topic
    path, an alarm id's topic level, the name of the control)."""

    kind: RouteKind
    target: str


@dataclass(slots=True, frozen=True)
class Watched:
    """What a message on one of the format's watched topics makes the session do: publish
    ``publish`` now, ahead of the buffered data; with ``leave``, then publish the format's
    ``on_leave`` message, disconnect and connect again."""

    publish: list[Message] = field(default_factory=list)
    leave: bool = False


class CommandLayout(Protocol):
    """The command side of a format: its topics, payloads and where answers go."""

    @property
    def filters(self) -> tuple[str, ...]:
        """Topic filters the session subscribes to for commands."""
        ...

    @property
    def result_topic(self) -> str:
        """Where answers go when a command names no usable response topic."""
        ...

    @property
    def answers(self) -> bool:
        """Whether commands are answered on MQTT. False for a protocol without replies
        (Sparkplug): every command is still audited and counted, and each reason of a
        refusal is logged once, since no sender hears of it."""
        ...

    def route(self, topic: str) -> Route | None:
        """The command an inbound topic carries, or None for a topic that is not one."""
        ...

    def split(self, route: Route, payload: bytes) -> list[tuple[Route, bytes]]:
        """The commands one message carries, each with its own route and payload for
        ``parse_write``/``parse_ack``/``control``: most formats carry one (the message
        itself); a Sparkplug DCMD carries one write per metric. Raises
        ``CommandRejected`` for a message that cannot be read at all."""
        ...

    def control(self, target: str, payload: bytes) -> list[Message]:
        """Carry out a ``control`` command: the messages to publish at once, ahead of the
        buffered data (which waits until they are out); raises ``CommandRejected`` for
        one this format does not offer."""
        ...

    def owns(self, topic: str) -> bool:
        """Whether ``topic`` is one of the gateway's own (output or command) topics, which
        an answer must never be published to: it would be taken for data or a command."""
        ...

    def reply_to(self, topic: str, outcome: str) -> str | None:
        """Where the answer to a command on ``topic`` goes when the protocol fixes it (an
        Azure direct method's response topic names its request and status; ``outcome``
        is ok, refused or unknown); None: the response topic, else the result topic."""
        ...

    def parse_write(self, payload: bytes) -> WriteRequest:
        """A write command's payload; raises ``CommandRejected`` for one that is not."""
        ...

    def parse_ack(self, payload: bytes) -> AckRequest:
        """An acknowledgement's payload; raises ``CommandRejected`` for one that is not."""
        ...

    def request_id(self, payload: bytes) -> str | None:
        """The sender's request id, for the answer even to a command that is refused."""
        ...


class OutputFormat(Protocol):
    """Topics, encodings and the connection's rules of one output format."""

    @property
    def per_read(self) -> bool:
        """True: the samples of one read are encoded together (one snapshot per read), so
        a read is handed on only once complete; False: chunks go on as they come in."""
        ...

    @property
    def commands(self) -> CommandLayout:
        """The command topics and payloads of this format."""
        ...

    @property
    def finish(self) -> Callable[[Message], Message] | None:
        """Completes a buffered message as it is sent on the current connection; None
        when the buffer holds finished messages (the cheap, common case)."""
        ...

    def samples(self, group: str, samples: list[Sample], *, backfill: bool) -> list[Message]:
        """The messages for the decided samples of one read (or chunk) of a group;
        ``backfill``: they come from the WinCC archive, after an outage."""
        ...

    def alarms(self, diff: AlarmDiff) -> list[Message]:
        """The messages for what one look at the active alarms changed."""
        ...

    @property
    def watched(self) -> tuple[str, ...]:
        """Topics the session subscribes to besides the commands, whose messages go to
        ``observe`` (Sparkplug: the primary host's STATE)."""
        ...

    @property
    def holding(self) -> bool:
        """True while the buffered data must wait on this connection (Sparkplug: until
        the primary host says online); the session asks after ``on_connect`` and after
        each ``observe``."""
        ...

    def observe(self, topic: str, payload: bytes) -> Watched | None:
        """A message on a watched topic; None for any other topic (a command)."""
        ...

    def catalog(self, groups: dict[str, list[str]]) -> list[Message]:
        """The tags each poll group reads are known (at start, or changed by a reload);
        what must be published now, before any data of them (births), if connected."""
        ...

    def will(self, since_ms: int) -> Message:
        """The message the broker publishes if the connection is lost."""
        ...

    def on_connect(self, status: Status) -> list[Message]:
        """Published, in order, on every new connection before anything buffered."""
        ...

    def on_source(self, status: Status) -> list[Message]:
        """Published when the WinCC source changed state while connected."""
        ...

    def on_tick(self, status: Status) -> list[Message]:
        """Published every few seconds while connected: the format's periodic report of
        the gateway's own state (Sparkplug: the buffer depth, when it changed); most
        formats have none."""
        ...

    def on_leave(self, status: Status) -> Message:
        """Published on a clean stop, just before disconnecting."""
        ...
