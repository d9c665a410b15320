"""The Sparkplug B payload as protobuf bytes, written by hand for the few messages an edge
node sends.

The field numbers are those of the Sparkplug B specification's ``sparkplug_b.proto``
(proto2): ``Payload`` timestamp 1, metrics 2, seq 3; ``Metric`` name 1, alias 2, timestamp
3, datatype 4, is_historical 5, is_null 7, properties 9, then the value: int_value 10
(uint32), long_value 11 (uint64), float_value 12, double_value 13, boolean_value 14,
string_value 15; ``PropertySet`` keys 1, values 2; ``PropertyValue`` type 1, is_null 2,
int_value 3 (uint32). Encoding them directly needs no protobuf runtime, no schema built at
run time and no generated code. Measured on a read of 1,000 doubles: 1.7 ms here, 0.6 ms
with the protobuf runtime's C backend, 1.1 ms for the same samples as per-tag JSON
payloads; the buffer and the publisher cost more per message than either encoder.

A protobuf message may carry its fields in any order, and for a field that is not
repeated the last occurrence wins; so the sequence number is appended at send time
(``with_seq``) and a stored payload is marked historical by re-framing its metrics
(``as_historical``), without decoding them.

Commands (NCMD, DCMD) come the other way: ``metrics_of`` splits a payload into its
metrics and ``read_metric`` reads one, its value by the datatype it carries or the one
the node declared for it in its birth.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gateway.core.models import Value

# Sparkplug datatypes (the specification's numbering).
INT8 = 1
INT16 = 2
INT32 = 3
INT64 = 4
UINT8 = 5
UINT16 = 6
UINT32 = 7
UINT64 = 8
FLOAT = 9
DOUBLE = 10
BOOLEAN = 11
STRING = 12
DATETIME = 13
TEXT = 14

_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_UNSIGNED = (UINT8, UINT16, UINT32, UINT64, DATETIME)

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF

_SMALL = tuple(bytes([n]) for n in range(128))
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_HISTORICAL = b"\x28\x01"  # Metric field 5 (is_historical), varint 1
_NULL = b"\x38\x01"  # Metric field 7 (is_null), varint 1


def varint(number: int) -> bytes:
    """``number`` (0 to 2**64-1) as a base-128 varint."""
    if number < 128:
        return _SMALL[number]
    out = bytearray()
    while number >= 128:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def _length_delimited(field: int, data: bytes) -> bytes:
    return _key(field, _LENGTH) + varint(len(data)) + data


def _value_field(datatype: int, value: Value) -> bytes | None:
    """The metric's value field for ``datatype``, or None for a value that does not fit
    it (it is then sent as null rather than as something it is not)."""
    if value is None:
        return None
    if datatype in (DOUBLE, FLOAT):
        return _real(datatype, value)
    if datatype == BOOLEAN:
        fits = isinstance(value, bool) or value in (0, 1)
        return (b"\x70\x01" if value else b"\x70\x00") if fits else None  # field 14
    if datatype == STRING:
        if not isinstance(value, str):
            return None
        return _length_delimited(15, value.encode("utf-8", "surrogatepass"))
    return _integer(datatype, value)


def _real(datatype: int, value: Value) -> bytes | None:
    """double_value (13) or float_value (12); a bool is sent as 1.0 or 0.0."""
    if not isinstance(value, int | float):
        return None
    if datatype == DOUBLE:
        return b"\x69" + _DOUBLE.pack(float(value))  # field 13, 64-bit
    return b"\x65" + _FLOAT.pack(float(value))  # field 12, 32-bit


def _integer(datatype: int, value: Value) -> bytes | None:
    """long_value (11) for 64-bit types, int_value (10) for the smaller ones, as the
    unsigned two's complement the schema's uint fields hold."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if datatype == INT64:
        fits = -(2**63) <= value < 2**64
        return b"\x58" + varint(value & _U64) if fits else None
    fits = -(2**31) <= value < 2**32
    return b"\x50" + varint(value & _U32) if fits else None


def property_set(properties: list[tuple[str, int, int]]) -> bytes:
    """A PropertySet of integer properties: (key, datatype, value) each."""
    keys = b"".join(_length_delimited(1, key.encode("utf-8")) for key, _, _ in properties)
    values = b"".join(
        _length_delimited(2, b"\x08" + varint(datatype) + b"\x18" + varint(number & _U32))
        for _, datatype, number in properties
    )
    return keys + values


def metric(
    *,
    datatype: int,
    value: Value,
    timestamp: int,
    name: str | None = None,
    alias: int | None = None,
    with_datatype: bool = True,
    historical: bool = False,
    properties: bytes | None = None,
) -> bytes:
    """One Metric: named and typed in births, by alias only (no name, no datatype) in data."""
    out = b""
    if name is not None:
        out += _length_delimited(1, name.encode("utf-8", "surrogatepass"))
    if alias is not None:
        out += b"\x10" + varint(alias)
    out += b"\x18" + varint(timestamp)
    if with_datatype:
        out += b"\x20" + varint(datatype)
    if historical:
        out += _HISTORICAL
    if properties is not None:
        out += _length_delimited(9, properties)
    encoded = _value_field(datatype, value)
    return out + (_NULL if encoded is None else encoded)


def payload(timestamp: int, metrics: list[bytes]) -> bytes:
    """A Payload without its seq: the timestamp first (``created_ms`` reads it there),
    then the metrics."""
    return b"\x08" + varint(timestamp) + b"".join(_length_delimited(2, m) for m in metrics)


def with_seq(encoded: bytes, seq: int) -> bytes:
    """The payload with its sequence number (field 3) appended."""
    return encoded + b"\x18" + varint(seq)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    number = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        number |= (byte & 0x7F) << shift
        if byte < 0x80:
            return number, pos
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """The top-level fields of a message: (field number, wire type, start of the field's
    key, end of the field), for walking a payload without decoding its metrics."""
    pos = 0
    end = len(data)
    while pos < end:
        start = pos
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == _VARINT:
            _, pos = _read_varint(data, pos)
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        elif wire == _LENGTH:
            size, pos = _read_varint(data, pos)
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield key >> 3, wire, start, pos


def created_ms(encoded: bytes) -> int:
    """The timestamp of a payload that ``payload`` encoded (its first field)."""
    if not encoded or encoded[0] != 0x08:
        raise ValueError("not a payload written by this gateway")
    return _read_varint(encoded, 1)[0]


def as_historical(encoded: bytes) -> bytes:
    """The payload with ``is_historical`` set on every metric."""
    parts: list[bytes] = []
    for field, wire, start, end in fields(encoded):
        if field != 2 or wire != _LENGTH:
            parts.append(encoded[start:end])
            continue
        _, body = _read_varint(encoded, _read_varint(encoded, start)[1])
        parts.append(_length_delimited(2, encoded[body:end] + _HISTORICAL))
    return b"".join(parts)


@dataclass(slots=True, frozen=True)
class ReadMetric:
    """One metric of a command: how it is addressed, when, and its typed value (None when
    null or of no datatype known to this node)."""

    name: str | None
    alias: int | None
    timestamp: int | None
    datatype: int | None
    value: Value


def _body(data: bytes, start: int) -> int:
    """Where the content of the length-delimited field whose key starts at ``start`` begins."""
    return _read_varint(data, _read_varint(data, start)[1])[1]


def metrics_of(encoded: bytes) -> tuple[int | None, list[bytes]]:
    """A payload's timestamp (None when absent) and its metrics, each still encoded;
    raises ValueError for bytes that are not a protobuf message."""
    timestamp: int | None = None
    metrics: list[bytes] = []
    for field, wire, start, end in fields(encoded):
        if field == 1 and wire == _VARINT:
            timestamp = _read_varint(encoded, _read_varint(encoded, start)[1])[0]
        elif field == 2 and wire == _LENGTH:
            metrics.append(encoded[_body(encoded, start) : end])
    return timestamp, metrics


def read_metric(
    encoded: bytes, declared: Callable[[str | None, int | None], int | None]
) -> ReadMetric:
    """One metric; ``declared(name, alias)`` gives the datatype the node declared for it,
    used when the metric names none (a command by alias). Raises ValueError for a
    malformed metric."""
    name: str | None = None
    alias = timestamp = datatype = None
    is_null = False
    raw: tuple[int, int, int, int] | None = None  # the value field: number, wire, start, end
    for field, wire, start, end in fields(encoded):
        if field == 1 and wire == _LENGTH:
            name = encoded[_body(encoded, start) : end].decode("utf-8")
        elif field in (2, 3, 4, 7) and wire == _VARINT:
            number = _read_varint(encoded, _read_varint(encoded, start)[1])[0]
            if field == 2:
                alias = number
            elif field == 3:
                timestamp = number
            elif field == 4:
                datatype = number
            else:
                is_null = bool(number)
        elif 10 <= field <= 15:
            raw = (field, wire, start, end)
    if datatype is None:
        datatype = declared(name, alias)
    value = (
        None if is_null or raw is None or datatype is None else _read_value(encoded, raw, datatype)
    )
    return ReadMetric(name, alias, timestamp, datatype, value)


def _read_value(data: bytes, raw: tuple[int, int, int, int], datatype: int) -> Value:
    """The value field as the Python value ``datatype`` says it holds."""
    field, wire, start, end = raw
    at = _read_varint(data, start)[1]  # past the key
    if field == 12 and wire == _FIXED32:
        return float(_FLOAT.unpack_from(data, at)[0])
    if field == 13 and wire == _FIXED64:
        return float(_DOUBLE.unpack_from(data, at)[0])
    if field == 15 and wire == _LENGTH:
        return data[_body(data, start) : end].decode("utf-8")
    if wire != _VARINT or field not in (10, 11, 14):
        raise ValueError(f"metric value field {field} of wire type {wire}")
    number = _read_varint(data, at)[0]
    if field == 14 or datatype == BOOLEAN:
        return bool(number)
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None:
        number &= (1 << bits) - 1
        return number - (1 << bits) if number >= 1 << (bits - 1) else number
    if datatype in _UNSIGNED:
        return number
    raise ValueError(f"an integer for a metric of datatype {datatype}")
