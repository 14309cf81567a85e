"""The frame protocol between the parent (pool) and a function worker process.

A frame is a 4-byte big-endian length followed by that many bytes of JSON (orjson). Both the
Python and the JavaScript worker speak it. Messages are JSON objects with an ``op``:

parent → child
  ``{"op": "init", "code", "filename", "settings", "secrets", "limits", "mocks"}`` once, first;
  ``{"op": "run", "id", "mode": "single" | "batch", "events": [...]}`` a micro-batch;
  ``{"op": "store_result", "rid", "value": <JSON text> | null}`` or ``{"op": "store_result", "rid",
  "error": {"type", "message"}}`` answers a ``store`` request (``value`` null: the key is absent).
  It may arrive while later ``run`` frames are already queued on the pipe: the worker keeps
  those for after the current frame.

child → parent
  ``{"op": "ready", "handlers": [...]}`` or ``{"op": "load_error", "error": {...}}`` after init;
  ``{"op": "result", "id", "results": [...], "batch": {...} | null, "recycle": bool}``;
  ``{"op": "hb"}`` heartbeats while a frame is being worked on (the watchdog's evidence that the
  child still yields to its event loop).
  ``{"op": "store", "rid", "action": "get" | "set" | "delete", "key", "value": <JSON text>,
  "ttlMs": int | null}`` while a frame runs: a handler's ``await store.get/set/delete(...)``
  (``value`` and ``ttlMs`` only for ``set``; ``rid`` numbers the requests of one worker). The
  parent answers from the instance's store (:mod:`sluice.functions.store_bridge`); the worker
  never opens the catalog database itself. Only the Python worker sends it.

This module imports nothing from the rest of sluice so the child can use it cheaply.
"""

from __future__ import annotations

import struct
from enum import StrEnum
from typing import Any

import orjson

HEADER = struct.Struct(">I")
#: Largest frame either side accepts (a defensive bound, far above any legal micro-batch).
MAX_FRAME_BYTES = 64 * 1024 * 1024


class Status(StrEnum):
    """Outcome of one event through a function (DESIGN §3.3, the rows that concern the function)."""

    OK = "ok"
    FILTERED = "filtered"
    DROPPED = "dropped"
    UNSUPPORTED_EVENT_TYPE = "unsupported_event_type"
    MESSAGE_REJECTED = "message_rejected"
    RETRY = "retry"
    TIMEOUT = "timeout"
    BAD_REQUEST = "bad_request"
    INVALID_SETTINGS = "invalid_settings"

    @property
    def retryable(self) -> bool:
        return self in (Status.RETRY, Status.TIMEOUT)

    @property
    def successful(self) -> bool:
        """``fn test`` exits 0 only when every status is one of these."""
        return self in (Status.OK, Status.FILTERED, Status.DROPPED)


def encode_frame(message: Any) -> bytes:
    body = orjson.dumps(message)
    return HEADER.pack(len(body)) + body


def encode_body_frame(body: bytes) -> bytes:
    """Frame already-encoded JSON bytes (lets callers splice pre-encoded events)."""
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    message = orjson.loads(body)
    if not isinstance(message, dict) or "op" not in message:
        raise ValueError("frame is not a message object with an 'op'")
    return message


def read_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {length} bytes is over the {MAX_FRAME_BYTES} byte limit")
    return int(length)
