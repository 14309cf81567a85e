"""The ingest app behind a real uvicorn server on 127.0.0.1 (port chosen by the OS)."""

from __future__ import annotations

import asyncio
import gzip
import socket

import httpx
import orjson
import uvicorn

from sluice.ingest import MemoryDeduplicator, create_ingest_app
from sluice.queue.memory import MemoryEventLog


async def test_real_http_server() -> None:
    log = MemoryEventLog()
    await log.subscribe("probe", ["src_1"])
    app = create_ingest_app(
        resolve_write_key=lambda key: ("src_1", True) if key == "wk" else None,
        log=log,
        dedupe=MemoryDeduplicator(),
        max_backlog=10_000,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue here until uvicorn accepts them: no start-up polling
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=("wk", ""), timeout=10) as client:
            body = {"batch": [{"type": "track", "userId": "u", "event": f"E{i}"} for i in range(100)]}
            r = await client.post(
                "/v1/batch", content=gzip.compress(orjson.dumps(body)), headers={"Content-Encoding": "gzip"}
            )
            assert r.status_code == 200 and r.json() == {"success": True}
            r = await client.post("/v1/identify", json={"userId": "u", "traits": {"plan": "pro"}})
            assert r.status_code == 200
            r = await client.post("/v1/track", content=b"{oops", auth=("nope", ""))
            assert r.status_code == 401
            r = await client.post("/v1/track", content=b"{oops")
            assert r.status_code == 400 and "char 1" in r.json()["error"]
        leased = await log.lease("probe", 1000, 60.0)
        events = [orjson.loads(e.payload) for e in leased]
        assert len(events) == 101
        assert events[-1]["type"] == "identify" and events[0]["event"] == "E0"
    finally:
        server.should_exit = True
        await serving
        sock.close()
