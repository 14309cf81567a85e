"""Fixtures of the delivery tests: an httpx client, a destination that never answers, and an
address that refuses connections. All on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


class HungServer:
    """Accepts connections and reads requests but never answers."""

    def __init__(self) -> None:
        self.url = ""
        self.connections = 0
        self.received = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):  # the client gave up
                await reader.readuntil(b"\r\n\r\n")
                self.received.set()
                await self.release.wait()
        finally:
            writer.close()


@pytest.fixture
async def hung_server() -> AsyncIterator[HungServer]:
    hung = HungServer()
    server = await asyncio.start_server(hung.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung.url = f"http://127.0.0.1:{port}"
    try:
        yield hung
    finally:
        hung.release.set()
        server.close()
        await server.wait_closed()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connecting is refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        sock.close()
