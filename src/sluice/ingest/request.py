"""Reading an ingest request: bounded (and gunzipped) body, Basic-auth write key, JSON decoding.

Every refusal is an :class:`IngestError` carrying the HTTP status and a message for the client.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from sluice.errors import SluiceError

__all__ = ["IngestError", "decode_json", "read_body", "write_key_from_basic_auth"]

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_COMPRESSED_SLACK = 64 * 1024  # gzip of incompressible data is slightly larger than the data


class IngestError(SluiceError):
    """A request ingest refuses: answered as ``status`` with ``{"success": false, "error": message}``."""

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


def write_key_from_basic_auth(header: str | None) -> str | None:
    """The write key in an ``Authorization: Basic …`` header: the user part of ``key:`` or a bare ``key``.

    ``None`` when there is no Basic header or it carries an empty key; a malformed one is a 401.
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise IngestError(401, "malformed Basic authorization header") from exc
    key = decoded.partition(":")[0]
    return key or None


async def read_body(
    stream: AsyncIterator[bytes], *, content_encoding: str | None, content_length: str | None, limit: int
) -> bytes:
    """The request body, gunzipped when ``Content-Encoding: gzip``; a 400 beyond ``limit`` bytes.

    The limit applies to the decompressed size and is enforced while reading, so neither a large
    body nor a gzip bomb is ever held in memory beyond ``limit`` (+ one chunk).
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise IngestError(400, f"unsupported Content-Encoding {content_encoding!r} (use gzip or none)")
    gzip = encoding != "identity"
    too_large = IngestError(400, f"request body exceeds the limit of {limit // 1024} KB ({limit} bytes)")
    if content_length is not None and not gzip:
        try:
            if int(content_length) > limit:
                raise too_large
        except ValueError:
            pass  # the server would have refused a malformed Content-Length already
    if not gzip:
        parts: list[bytes] = []
        size = 0
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
        return b"".join(parts)

    inflater = zlib.decompressobj(_GZIP_WBITS)
    out = bytearray()
    compressed = 0
    try:
        async for chunk in stream:
            compressed += len(chunk)
            if compressed > limit + _COMPRESSED_SLACK:
                raise too_large
            if not chunk or inflater.eof:
                continue  # bytes after the gzip member are ignored
            out += inflater.decompress(chunk, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise too_large
        if not inflater.eof:
            raise IngestError(400, "invalid gzip body: truncated")
    except zlib.error as exc:
        raise IngestError(400, f"invalid gzip body: {exc}") from exc
    return bytes(out)


def decode_json(body: bytes) -> Any:
    """The decoded body; a 400 naming the line, column and byte position of invalid JSON."""
    if not body.strip():
        raise IngestError(400, "invalid JSON: the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(
            400, f"invalid JSON at line {exc.lineno} column {exc.colno} (char {exc.pos}): {exc.msg}"
        ) from exc
