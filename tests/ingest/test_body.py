"""gzip bodies (and a gzip bomb), the three size limits and invalid JSON."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
import pytest

from sluice.ingest import IngestLimits
from tests.ingest.conftest import SOURCE, Harness, MakeHarness

TRACK = {"userId": "u1", "event": "Signed Up"}


def gz(body: Any) -> bytes:
    return gzip.compress(orjson.dumps(body))


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip"])
async def test_gzip_body(h: Harness, encoding: str) -> None:
    r = await h.post("/v1/track", gz(TRACK), headers={"Content-Encoding": encoding})
    assert r.status_code == 200, r.text
    [event] = await h.stored()
    assert event["event"] == "Signed Up"


async def test_gzip_bomb_is_a_400(h: Harness) -> None:
    # 100 MB of zeros compress to ~100 KB; the reader stops at the 500 KB limit.
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(b"0" * (100 * 1024 * 1024)) + packer.flush()
    assert len(bomb) < 200 * 1024
    r = await h.post("/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert r.json() == {"success": False, "error": r.json()["error"]}
    assert "500 KB" in r.json()["error"]
    assert await h.stored() == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [(b"not gzip at all", "invalid gzip"), (gzip.compress(b'{"userId": "u"}')[:-12], "truncated")],
)
async def test_bad_gzip_is_a_400(h: Harness, body: bytes, needle: str) -> None:
    r = await h.post("/v1/track", body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and needle in r.json()["error"]


async def test_unsupported_encoding_is_a_400(h: Harness) -> None:
    r = await h.post("/v1/track", TRACK, headers={"Content-Encoding": "br"})
    assert r.status_code == 400 and "Content-Encoding" in r.json()["error"]


@pytest.mark.parametrize("compress", [False, True])
async def test_request_limit_500kb_decompressed(h: Harness, compress: bool) -> None:
    batch = [{"type": "track", "userId": "u", "event": "E", "properties": {"p": "x" * 10_000}}] * 52  # ~521 KB
    body = orjson.dumps({"batch": batch})
    assert len(body) > 500 * 1024
    headers = {"Content-Encoding": "gzip"} if compress else {}
    r = await h.post("/v1/batch", gzip.compress(body) if compress else body, headers=headers)
    assert r.status_code == 400 and "500 KB" in r.json()["error"]
    ok = await h.post("/v1/batch", {"batch": batch[:45]}, headers={})
    assert ok.status_code == 200
    assert len(await h.stored()) == 45


async def test_event_limit_32kb(h: Harness) -> None:
    big = {**TRACK, "properties": {"p": "x" * (32 * 1024)}}
    r = await h.post("/v1/track", big)
    assert r.status_code == 400 and "32 KB" in r.json()["error"]
    r = await h.post("/v1/batch", {"batch": [{**TRACK, "type": "track"}, {**big, "type": "track"}]})
    assert r.status_code == 400
    assert "event 1 of the batch" in r.json()["error"] and "32 KB" in r.json()["error"]
    assert await h.stored() == []  # the whole request is refused
    assert h.stats.snapshot().refused == {400: 2}


async def test_batch_limit_2500_events(h: Harness) -> None:
    item = {"type": "track", "userId": "u", "event": "E"}
    r = await h.post("/v1/batch", {"batch": [item] * 2501})
    assert r.status_code == 400 and "2500" in r.json()["error"]
    assert (await h.post("/v1/batch", {"batch": [item] * 2500})).status_code == 200
    assert len(await h.stored()) == 2500


async def test_limits_are_configurable(make_harness: MakeHarness) -> None:
    h = make_harness(limits=IngestLimits(max_event_bytes=1024, max_request_bytes=4096, max_batch_events=3))
    item = {"type": "track", "userId": "u", "event": "E"}
    assert (await h.post("/v1/batch", {"batch": [item] * 4})).status_code == 400
    assert (await h.post("/v1/track", {**item, "properties": {"p": "x" * 1100}})).status_code == 400
    assert (await h.post("/v1/batch", {"batch": [{**item, "p": "x" * 900}] * 3})).status_code == 400
    assert (await h.post("/v1/batch", {"batch": [item] * 3})).status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"userId": "u",\n  "event": }', "line 2 column 12 (char 27)"),
        (b"{", "line 1 column 2 (char 1)"),
        (b"", "empty"),
        (b"  \n", "empty"),
    ],
)
async def test_invalid_json_names_the_position(h: Harness, body: bytes, needle: str) -> None:
    r = await h.post("/v1/track", body)
    assert r.status_code == 400
    assert r.json()["success"] is False
    assert "invalid JSON" in r.json()["error"] and needle in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/track", [TRACK], "JSON object"),
        ("/v1/track", "a string", "JSON object"),
        ("/v1/batch", {"batch": {"not": "a list"}}, '"batch" array'),
        ("/v1/batch", TRACK, '"batch" array'),
    ],
)
async def test_wrong_shapes_are_400(h: Harness, path: str, body: Any, needle: str) -> None:
    r = await h.post(path, body)
    assert r.status_code == 400 and needle in r.json()["error"]


async def test_too_deeply_nested_event_fails_as_not_encodable(h: Harness) -> None:
    deep = b'{"n":' * 300 + b'"leaf"' + b"}" * 300  # orjson reads 1024 levels but writes only 254
    r = await h.post("/v1/track", b'{"userId": "u1", "event": "E", "properties": ' + deep + b"}")
    assert r.status_code == 200
    assert h.stats.snapshot().failed == {SOURCE: {"not_encodable": 1}}
