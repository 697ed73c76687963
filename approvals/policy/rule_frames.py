"""The frames the supervised child and its parent exchange: a 4-byte big-endian length, then JSON.
Kept apart from approvals.policy.rule_child, which runs as ``python -m`` and is imported by nothing."""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import IO, Any

import orjson

HEADER = struct.Struct(">I")


def frame_read(stream: IO[bytes]) -> Any:
    """The next frame's value, or None at the end of the stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    return frame_decode(stream.read(size))


def frame_decode(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # integers beyond 64 bits, which orjson refuses
        return json.loads(data)


def json_encode(value: Any) -> bytes:
    """JSON of the rule variables (datetimes as ISO 8601) or of an answer."""
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)).encode()


def frame_encode(value: Any) -> bytes:
    data = json_encode(value)
    return HEADER.pack(len(data)) + data
