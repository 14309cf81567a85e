"""The worker's end of the parent → worker pipe (used by :mod:`sluice.functions.child_py`).

Frames are read blocking between micro-batches; while a handler awaits a ``store`` answer, the
pipe is read from the event loop instead, and whatever else arrives meanwhile is kept for later.
Imports nothing from catalog, queue or config.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Callable
from itertools import count
from typing import Any

from sluice import fn
from sluice.functions import protocol

__all__ = ["Channel"]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Channel:
    """The parent → worker pipe: frames read blocking between frames, and ``store`` replies
    read on the event loop while a frame awaits them.

    While a ``store`` request is pending, the pipe is read from the loop; frames other than
    ``store_result`` met meanwhile (the next queued ``run``, a ``stop``) wait in ``backlog`` for
    :meth:`receive`. With no request pending, nothing changes from a plain blocking read.
    """

    def __init__(self, fd: int, write: Callable[[bytes], None]) -> None:
        self.fd = fd
        self.write = write
        self.buffer = bytearray()
        self.backlog: collections.deque[dict[str, Any]] = collections.deque()
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = count(1)
        self.reading = False
        self.eof = False

    def _exact(self, n: int) -> bytes | None:
        if not self.buffer:
            return _read_exact(self.fd, n)
        head = bytes(self.buffer[:n])
        del self.buffer[:n]
        if len(head) == n:
            return head
        rest = _read_exact(self.fd, n - len(head))
        return None if rest is None else head + rest

    def receive(self) -> dict[str, Any] | None:
        """The next frame that is not a ``store_result`` (blocking); ``None`` at end of input."""
        while True:
            if self.backlog:
                message = self.backlog.popleft()
            else:
                if self.eof and not self.buffer:
                    return None
                header = self._exact(protocol.HEADER.size)
                if header is None:
                    return None
                body = self._exact(protocol.read_length(header))
                if body is None:
                    return None
                message = protocol.decode_body(body)
            if message.get("op") != "store_result":  # a late answer to an abandoned request
                return message

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a ``store`` request and wait for its ``store_result``."""
        if self.eof:
            raise fn.StoreError("the worker's pipe to sluice is closed")
        loop = asyncio.get_running_loop()
        rid = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.waiting[rid] = future
        self.write(protocol.encode_frame({"op": "store", "rid": rid, **message}))
        if not self.reading:
            loop.add_reader(self.fd, self._on_readable)
            self.reading = True
        try:
            return await future
        finally:
            self.waiting.pop(rid, None)
            if not self.waiting and self.reading:
                loop.remove_reader(self.fd)
                self.reading = False

    def _on_readable(self) -> None:
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            self.eof = True
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(fn.StoreError("the worker's pipe to sluice closed"))
            asyncio.get_running_loop().remove_reader(self.fd)
            self.reading = False
            return
        self.buffer += chunk
        size = protocol.HEADER.size
        while len(self.buffer) >= size:
            length = protocol.read_length(bytes(self.buffer[:size]))
            if len(self.buffer) < size + length:
                break
            message = protocol.decode_body(bytes(self.buffer[size : size + length]))
            del self.buffer[: size + length]
            if message.get("op") == "store_result":
                answered = self.waiting.get(int(message.get("rid") or 0))
                if answered is not None and not answered.done():
                    answered.set_result(message)
            else:
                self.backlog.append(message)
