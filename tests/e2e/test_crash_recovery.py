"""Crash recovery of a real ``sluice serve``: every event acknowledged with HTTP 200 is delivered
at least once after ``kill -9`` of the server, ``kill -9`` of a function worker, and SIGTERM while
delivery is in progress. Duplicates are allowed (at-least-once): they are counted and printed."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import HttpServer, Recorded
from tests.e2e.conftest import Sluice, delivered_events, poll, real_events

pytestmark = pytest.mark.timeout(300)

TRIVIAL_FUNCTION = "def on_track(event, settings):\n    return event\n"
DELIVERY_DEADLINE_S = 90.0


class Sender(threading.Thread):
    """Posts ``batches`` × ``per_batch`` track events to /v1/batch, one request at a time, with
    unique messageIds. A batch that fails (connection refused or reset, non-200) is retried until
    it gets a 200 or ``give_up_s`` passes: a server that was killed is restarted by the test, on a
    new port that :attr:`Sluice.url` gives."""

    def __init__(
        self, server: Sluice, *, batches: int, per_batch: int, give_up_s: float = 120.0, hold_at: int | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.batches = batches
        self.per_batch = per_batch
        self.give_up_s = give_up_s
        self.run_id = uuid.uuid4().hex[:8]
        self.acked: list[int] = []  # batch numbers answered 200
        self.acked_ids: set[str] = set()
        self.failed_attempts = 0
        self.given_up: list[int] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()
        # Sending waits before batch ``hold_at`` until :meth:`release`: what the test does to the
        # server then happens mid-stream however fast or slow this machine is.
        self.hold_at = hold_at
        self._released = threading.Event()

    def ids(self, batch: int) -> list[str]:
        return [f"{self.run_id}-{batch:04d}-{i:03d}" for i in range(self.per_batch)]

    def body(self, batch: int) -> dict[str, Any]:
        events = [
            {
                "type": "track",
                "event": "Crash Test",
                "userId": f"u{i % 7}",
                "messageId": mid,
                "properties": {"b": batch},
            }
            for i, mid in enumerate(self.ids(batch))
        ]
        return {"batch": events}

    def stop(self) -> None:
        self._halt.set()
        self._released.set()

    def release(self) -> None:
        self._released.set()

    def run(self) -> None:
        try:
            with httpx.Client(trust_env=False, timeout=30) as client:
                for batch in range(self.batches):
                    if batch == self.hold_at:
                        self._released.wait(timeout=120)
                    if not self._send(client, batch):
                        self.given_up.append(batch)
                    if self._halt.is_set():
                        return
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _send(self, client: httpx.Client, batch: int) -> bool:
        body = self.body(batch)
        end = time.monotonic() + self.give_up_s
        while not self._halt.is_set():
            try:
                response = client.post(f"{self.server.url}/v1/batch", json=body, auth=(self.server.write_key, ""))
            except httpx.HTTPError:  # the server is down (killed, restarting): try again below
                response = None
            if response is not None and response.status_code == 200:
                self.acked.append(batch)
                self.acked_ids.update(self.ids(batch))
                return True
            self.failed_attempts += 1
            if time.monotonic() >= end:
                return False
            self._halt.wait(0.1)  # back off a little before the retry (the server may be restarting)
        return False

    def check(self) -> None:
        assert self.error is None, f"the sender crashed: {self.error!r}"
        assert self.given_up == [], f"batches never acknowledged: {self.given_up}"
        assert len(self.acked) == self.batches


@pytest.fixture
def senders() -> Iterator[list[Sender]]:
    """Senders to stop at teardown (a failed test leaves none posting in the background)."""
    started: list[Sender] = []
    yield started
    for sender in started:
        sender.stop()
        sender.join(timeout=35)


def _wait_all_delivered(sink: HttpServer, path: str, expected: set[str], server: Sluice) -> list[dict[str, Any]]:
    def missing() -> set[str]:
        got = {e.get("messageId") for e in delivered_events(sink, path)}
        return expected - got

    poll(
        lambda: not missing(),
        deadline_s=DELIVERY_DEADLINE_S,
        interval_s=0.25,
        message=lambda: (
            f"{len(missing())} acknowledged events never delivered, e.g. {sorted(missing())[:5]}\n" + server.describe()
        ),
    )
    return real_events(delivered_events(sink, path))


def _duplicates(events: list[dict[str, Any]], expected: set[str]) -> int:
    counts = collections.Counter(e["messageId"] for e in events if e["messageId"] in expected)
    return sum(n - 1 for n in counts.values())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes (its parent, killed, no longer reaps it until init does).
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def test_kill_9_of_the_server_mid_stream_loses_no_acknowledged_event(
    sluice: Sluice, http_server: HttpServer, senders: list[Sender]
) -> None:
    started = time.monotonic()
    http_server.route("/hook", 200, {"ok": True})
    sluice.connect_webhook(http_server, TRIVIAL_FUNCTION, path="/hook", batch_size=50)
    sender = Sender(sluice, batches=100, per_batch=100, hold_at=80)
    senders.append(sender)
    sender.start()

    # Kill -9 roughly mid-stream, while events are both being sent and being delivered (the
    # sender holds at batch 80 until the kill if this machine is slow to notice the 50th).
    poll(
        lambda: len(sender.acked) >= 50 and real_events(delivered_events(http_server, "/hook")),
        deadline_s=60,
        interval_s=0.02,
        message="the sender did not get 50 batches acknowledged, or nothing was delivered",
    )
    workers = sluice.worker_pids()
    acked_before = len(sender.acked)
    delivered_before = len(real_events(delivered_events(http_server, "/hook")))
    sluice.kill()
    sluice.restart()
    sender.release()

    sender.join(timeout=150)
    assert not sender.is_alive(), "the sender did not finish"
    sender.check()
    events = _wait_all_delivered(http_server, "/hook", sender.acked_ids, sluice)
    duplicates = _duplicates(events, sender.acked_ids)
    print(
        f"\n[kill -9 server] acked batches before the kill: {acked_before}/100, delivered before the kill: "
        f"{delivered_before}, failed send attempts: {sender.failed_attempts}, events delivered: {len(events)}, "
        f"duplicates: {duplicates}, took {time.monotonic() - started:.1f} s"
    )
    assert len({e["messageId"] for e in events} & sender.acked_ids) == 10_000
    # The killed server's function workers notice that their parent is gone and exit.
    poll(
        lambda: all(_gone(pid) for pid in workers),
        deadline_s=30,
        message=lambda: f"orphaned function workers still running: {[p for p in workers if not _gone(p)]}",
    )
    assert sluice.stop() == 0


@pytest.mark.parametrize(
    "module", [b"sluice.functions.child_py", b"sluice.worker"], ids=["function-worker", "delivery"]
)
def test_kill_9_of_a_function_worker_or_the_delivery_process_loses_no_acknowledged_event(
    sluice: Sluice, http_server: HttpServer, senders: list[Sender], module: bytes
) -> None:
    started = time.monotonic()
    http_server.route("/hook", 200, {"ok": True})
    sluice.connect_webhook(http_server, TRIVIAL_FUNCTION, path="/hook", batch_size=50)
    workers = poll(lambda: sluice.worker_pids(module), deadline_s=30, message=f"no {module.decode()} process found")
    sender = Sender(sluice, batches=60, per_batch=100, hold_at=30)
    senders.append(sender)
    sender.start()

    # Kill the worker while it transforms events; the sender holds at batch 30 until then.
    poll(
        lambda: len(real_events(delivered_events(http_server, "/hook"))) >= 500,
        deadline_s=60,
        message="fewer than 500 events delivered",
    )
    victim = workers[0]
    delivered_before = len(real_events(delivered_events(http_server, "/hook")))
    os.kill(victim, signal.SIGKILL)
    poll(lambda: _gone(victim), deadline_s=30, message=f"worker {victim} did not die")
    sender.release()

    sender.join(timeout=150)
    assert not sender.is_alive(), "the sender did not finish"
    sender.check()
    assert sender.failed_attempts == 0, "ingest must not notice a crash in delivery"
    events = _wait_all_delivered(http_server, "/hook", sender.acked_ids, sluice)
    duplicates = _duplicates(events, sender.acked_ids)
    new_workers = poll(lambda: sluice.worker_pids(module), deadline_s=30, message="no replacement process")
    print(
        f"\n[kill -9 {module.decode()}] killed {victim} after {delivered_before} deliveries; events delivered: "
        f"{len(events)}, duplicates: {duplicates}, workers now: {new_workers}, "
        f"took {time.monotonic() - started:.1f} s"
    )
    assert sluice.running()
    assert victim not in new_workers
    assert sluice.stop() == 0


def test_sigterm_drains_and_a_restart_delivers_every_acknowledged_event(
    sluice: Sluice, http_server: HttpServer, senders: list[Sender]
) -> None:
    started = time.monotonic()

    in_flight = [0]
    lock = threading.Lock()

    def slow(_: Recorded) -> tuple[int, Any, dict[str, str]]:
        with lock:
            in_flight[0] += 1
        try:
            time.sleep(0.05)  # a slow destination: delivery is still in progress at SIGTERM
            return 200, {"ok": True}, {}
        finally:
            with lock:
                in_flight[0] -= 1

    http_server.route_fn("/slow", slow)
    sluice.connect_webhook(http_server, TRIVIAL_FUNCTION, path="/slow", batch_size=20)
    sender = Sender(sluice, batches=20, per_batch=100, give_up_s=30)
    senders.append(sender)
    sender.start()
    sender.join(timeout=60)
    assert not sender.is_alive(), "the sender did not finish"
    sender.check()
    assert sender.failed_attempts == 0

    poll(
        lambda: len(real_events(delivered_events(http_server, "/slow"))) >= 200,
        deadline_s=60,
        message="delivery did not start",
    )
    poll(lambda: in_flight[0] > 0, deadline_s=30, interval_s=0.005, message="no delivery request in flight")
    delivered_before = len(real_events(delivered_events(http_server, "/slow")))
    assert delivered_before < len(sender.acked_ids), "delivery finished before SIGTERM: make the sink slower"
    stop_started = time.monotonic()
    code = sluice.stop(deadline_s=60)
    stop_s = time.monotonic() - stop_started
    assert code == 0, sluice.describe()
    assert "sluice stopped." in sluice.stdout
    delivered_at_stop = len(real_events(delivered_events(http_server, "/slow")))

    sluice.restart()
    events = _wait_all_delivered(http_server, "/slow", sender.acked_ids, sluice)
    duplicates = _duplicates(events, sender.acked_ids)
    print(
        f"\n[SIGTERM drain] delivered at SIGTERM: {delivered_before}, at exit: {delivered_at_stop} "
        f"(exit 0 after {stop_s:.1f} s), after the restart: {len(events)}, duplicates: {duplicates}, "
        f"took {time.monotonic() - started:.1f} s"
    )
    assert sluice.stop() == 0
