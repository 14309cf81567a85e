"""Scale-out for real: separate ``sluice serve --role …`` processes sharing only PostgreSQL and NATS.

One API process, two ingest processes and three workers on one machine. 50,000 events are sent
through both ingest processes (a client that fails over, as a load balancer would); mid-stream
one worker (with its delivery process and function workers) and one ingest process are killed
with SIGKILL, and a new function version is deployed. Every event acknowledged with a 200 must
reach the destination at least once; duplicates are counted and reported. The senders then pause
again until every live worker reports the new version in ``/metrics``: the last 10,000 events,
sent after that, must all carry the new version's mark.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HttpServer
from tests.e2e.conftest import ADMIN_TOKEN, Sluice, _descendants, delete_nats_prefix, delivered_events, poll
from tests.nats_util import require_nats, unique_prefix

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

V1 = "def on_track(event, settings):\n    event.setdefault('properties', {})['v'] = 1\n    return event\n"
V2 = "def on_track(event, settings):\n    event.setdefault('properties', {})['v'] = 2\n    return event\n"
BATCHES, PER_BATCH, SENDERS = 250, 100, 2  # 50,000 events
HOLD_AT = 60  # each sender pauses here until the kills and the deploy are done
LATE_AT = 200  # … and here until every live worker runs the new version (the last 10,000 events)


class FailoverSender(threading.Thread):
    """Posts batches to /v1/batch, one request at a time, starting on ``first`` of the ingest
    processes; a refused or failed request moves to the next one and is retried there."""

    def __init__(self, urls: list[str], write_key: str, first: int) -> None:
        super().__init__(daemon=True)
        self.urls, self.write_key, self.at = urls, write_key, first
        self.run_id = uuid.uuid4().hex[:8]
        self.acked_ids: set[str] = set()
        self.sent_at: dict[int, float] = {}  # batch → when its first attempt started (monotonic)
        self.acked = 0
        self.retries = 0
        self.error: BaseException | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.release_late = threading.Event()
        self.halt = threading.Event()

    def ids(self, batch: int) -> list[str]:
        return [f"{self.run_id}-{batch:04d}-{i:03d}" for i in range(PER_BATCH)]

    def run(self) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=30) as client:
                for batch in range(BATCHES):
                    if batch == HOLD_AT:
                        self.holding.set()
                        self.release.wait(timeout=300)
                    if batch == LATE_AT:
                        self.release_late.wait(timeout=300)
                    if self.halt.is_set():
                        return
                    self.sent_at[batch] = time.monotonic()
                    self._send(client, batch)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _send(self, client: httpx.Client, batch: int) -> None:
        ids = self.ids(batch)
        body = {"batch": [{"type": "track", "event": "Scale", "userId": "u", "messageId": m} for m in ids]}
        deadline = time.monotonic() + 120
        while not self.halt.is_set():
            with contextlib.suppress(httpx.HTTPError):  # refused or reset: that process is down
                url = f"{self.urls[self.at % len(self.urls)]}/v1/batch"
                response = client.post(url, json=body, auth=(self.write_key, ""))
                if response.status_code == 200:
                    self.acked += 1
                    self.acked_ids.update(ids)
                    return
            self.retries += 1
            self.at += 1  # the next ingest process
            if time.monotonic() > deadline:
                raise AssertionError(f"batch {batch} was never acknowledged")


def kill_9(process: Sluice) -> None:
    """SIGKILL a sluice process and everything it started (delivery process, function workers)."""
    victims = [process.pid, *_descendants(process.pid)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert process.proc is not None
    process.proc.wait(timeout=30)


def version_on(process: Sluice, destination_id: str) -> str | None:
    text = httpx.get(f"{process.url}/metrics", timeout=10, trust_env=False).text
    for line in text.splitlines():
        if line.startswith("sluice_function_version_info{") and f'destination="{destination_id}"' in line:
            return line.split('version="', 1)[1].split('"', 1)[0]
    return None


@pytest.fixture
def cluster(tmp_path: Path, fresh_pg_url: str) -> Iterator[dict[str, list[Sluice]]]:
    queue_url = f"{require_nats()}?prefix={unique_prefix()}&ack_wait=5"
    env = {"SLUICE_SECRET_KEY": secrets.token_hex(32), "SLUICE_ADMIN_TOKEN": ADMIN_TOKEN}

    def process(role: str, n: int) -> Sluice:
        return Sluice(tmp_path / f"{role}-{n}", fresh_pg_url, queue_url=queue_url, role=role, env=env)

    roles = {"api": [process("api", 0)], "ingest": [process("ingest", i) for i in range(2)]}
    roles["worker"] = [process("worker", i) for i in range(3)]
    try:
        for group in roles.values():
            for member in group:
                member.start()
        yield roles
    finally:
        for group in roles.values():
            for member in group:
                member.close()
        delete_nats_prefix(queue_url)


def test_two_ingest_three_workers_one_api_survive_kill_9_and_a_deploy(
    cluster: dict[str, list[Sluice]], http_server: HttpServer
) -> None:
    api, ingest, workers = cluster["api"][0], cluster["ingest"], cluster["worker"]
    write_key = api.write_key
    http_server.route("/scale")
    function = api.create_function(V1, name="Scale-out function")
    destination = api.create_webhook(f"{http_server.url}/scale", batch_size=100, name="Scale-out webhook")
    api.create_instance(function["id"], destination["id"])
    urls = [p.url for p in ingest]

    def probe_arrived() -> bool:  # every worker reads the catalog every 2 s: probe until one delivers
        with httpx.Client(trust_env=False, timeout=10) as client:
            probe = {"type": "track", "event": "probe", "userId": "p", "messageId": f"probe-{uuid.uuid4()}"}
            client.post(f"{urls[0]}/v1/track", json=probe, auth=(write_key, ""))
        return any(e.get("event") == "probe" for e in delivered_events(http_server, "/scale"))

    poll(probe_arrived, deadline_s=60, interval_s=0.5, message="no probe delivered")

    senders = [FailoverSender(urls, write_key, first=i) for i in range(SENDERS)]
    for sender in senders:
        sender.start()
    try:
        for sender in senders:
            assert sender.holding.wait(timeout=180), "the senders did not reach the hold point"
        delivered_before = len(delivered_events(http_server, "/scale"))

        kill_9(workers[0])
        kill_9(ingest[0])
        patched = api.api.patch(f"/functions/{function['id']}", json={"code": V2})
        assert patched.status_code == 200, patched.text
        deployed = api.api.post(f"/functions/{function['id']}/deploy")
        assert deployed.status_code == 200, deployed.text
        v2 = deployed.json()["data"]["deploy"]["versionId"]
        for sender in senders:
            sender.release.set()

        live = workers[1:]
        poll(
            lambda: all(version_on(w, destination["id"]) == v2 for w in live),
            deadline_s=60,
            interval_s=0.2,
            message="the live workers never reported the new version",
        )
        confirmed = time.monotonic()
        for sender in senders:
            sender.release_late.set()
        for sender in senders:
            sender.join(timeout=300)
            assert sender.error is None, f"a sender failed: {sender.error!r}"
            assert sender.acked == BATCHES
    finally:
        for sender in senders:
            sender.halt.set()
            sender.release.set()
            sender.release_late.set()

    acked = set().union(*(s.acked_ids for s in senders))
    assert len(acked) == SENDERS * BATCHES * PER_BATCH

    def missing() -> set[str]:
        return acked - {e.get("messageId") for e in delivered_events(http_server, "/scale")}

    poll(lambda: not missing(), deadline_s=180, interval_s=0.5, message=lambda: f"{len(missing())} never delivered")
    events = [e for e in delivered_events(http_server, "/scale") if e.get("messageId") in acked]
    counts = collections.Counter(e["messageId"] for e in events)
    duplicates = sum(n - 1 for n in counts.values())
    after = {m for s in senders for b, at in s.sent_at.items() if at > confirmed for m in s.ids(b)}
    late_versions = collections.Counter(e["properties"]["v"] for e in events if e["messageId"] in after)
    print(
        f"\n[scale-out] acknowledged {len(acked)}, delivered {len(counts)} distinct, duplicates {duplicates}; "
        f"delivered before the kills {delivered_before}; sender retries {sum(s.retries for s in senders)}; "
        f"events sent after the deploy reached every live worker: {len(after)} ({dict(late_versions)})"
    )
    assert len(after) >= SENDERS * (BATCHES - LATE_AT) * PER_BATCH
    assert set(late_versions) == {2}, late_versions
    assert set(collections.Counter(e["properties"]["v"] for e in events)) <= {1, 2}
