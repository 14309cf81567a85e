"""`sluice replay` and `sluice tail` against a real `sluice serve` and a real HTTP destination.

The server is a `sluice serve --port 0` subprocess; the destinations are webhooks pointed at the
``http_server`` fixture on 127.0.0.1; every CLI call is a real `python -m sluice` subprocess.
Nothing waits a fixed time: each step polls with a deadline (the pipeline reads the catalog every
2 s, so a new destination starts receiving within a few seconds).
"""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.cli import delivery_cmd
from sluice.cli.delivery_cmd import DEAD_LETTER_STATUSES, OUTCOMES, format_line, parse_since
from sluice.cli.remote import ApiClient, Remote
from sluice.delivery.outcomes import Outcome
from sluice.pipeline.stages import DEAD_LETTER_OUTCOMES
from tests.cli.test_remote_cli import Running, clean_env, login, sluice, start_server
from tests.conftest import Answer, HttpServer, Recorded

DEADLINE_S = 60.0
_ids = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("serve")
    data_dir = work / "data"
    serve, url, printed = start_server(work, data_dir)
    try:
        assert printed is not None, serve.output()
        yield Running(serve, url, printed, data_dir, work)
    finally:
        code = serve.stop(signal.SIGTERM)
    assert code == 0, serve.output()


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "config"


def until(check: Callable[[], Any], timeout_s: float = DEADLINE_S, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fails at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what or check}")
        time.sleep(0.05)


def soon(check: Callable[[], Any], within_s: float) -> Any:
    """``check``'s first truthy result within ``within_s`` seconds, else None."""
    deadline = time.monotonic() + within_s
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def demo_source(api: httpx.Client) -> tuple[str, str]:
    """The demo source's id and write key."""
    sources = api.get("/sources").json()["data"]["sources"]
    return sources[0]["id"], sources[0]["writeKeys"][0]


def webhook(api: httpx.Client, name: str, url: str, source_id: str, **config: Any) -> dict[str, Any]:
    body = {"name": name, "type": "webhook", "config": {"url": url, **config}, "sourceIds": [source_id]}
    response = api.post("/destinations", json=body)
    assert response.status_code == 201, response.text
    destination: dict[str, Any] = response.json()["data"]["destination"]
    return destination


def track(server: Running, write_key: str, message_id: str, event: str = "Signed Up") -> None:
    body = {"type": "track", "event": event, "userId": "u-1", "messageId": message_id}
    response = httpx.post(server.url + "/v1/track", json=body, auth=(write_key, ""), timeout=30)
    assert response.status_code == 200, response.text


def message_ids(request: Recorded) -> list[str]:
    body = request.json()
    return [e.get("messageId") for e in (body if isinstance(body, list) else [body])]


def backlog(api: httpx.Client, destination_id: str) -> int:
    return int(api.get(f"/destinations/{destination_id}/queue").json()["data"]["queue"]["backlog"])


def new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{time.monotonic_ns()}"


# --- replay ---------------------------------------------------------------------------------------


def test_replay_requeues_an_expired_event_and_it_is_delivered(
    server: Running, http_server: HttpServer, tmp_path: Path, cfg: Path
) -> None:
    target = new_id("target")
    state = {"failing": True}
    delivered: list[str] = []

    def answer(request: Recorded) -> Answer:
        ids = message_ids(request)
        if state["failing"] and target in ids:
            return 500, {"error": "down"}, {}
        delivered.extend(ids)
        return 200, {"ok": True}, {}

    http_server.route_fn("/hook", answer)
    with server.api() as api:
        source_id, key = demo_source(api)
        dest = webhook(api, "replay hook", http_server.url + "/hook", source_id, retryMaxAgeS=1)
        did = dest["id"]

        # Probes (answered 200) until the pipeline delivers to the new destination, then let them settle.
        sent = []
        while not delivered:
            assert len(sent) < 200, "the pipeline never delivered to the new destination"
            sent.append(new_id("probe"))
            track(server, key, sent[-1])
            soon(lambda: delivered, 0.3)
        until(lambda: backlog(api, did) == 0, what="the probes to settle")

        # The target fails (500) until it expires after retryMaxAgeS = 1 s.
        track(server, key, target)

        def expired() -> list[dict[str, Any]]:
            listed = api.get(f"/destinations/{did}/dead-letters", params={"status": "expired"})
            assert listed.status_code == 200, listed.text
            letters: list[dict[str, Any]] = listed.json()["data"]["deadLetters"]
            return letters

        (letter,) = until(expired, what="the event to expire")
        assert letter["event"]["messageId"] == target and letter["status"] == "expired"
        assert target not in delivered

        def counted() -> bool:  # the server writes its counters every second: wait for them
            view = api.get(f"/destinations/{did}/delivery", params={"window": "10m"}).json()["data"]["delivery"]
            return (view["delivered"], view["notDelivered"]) == (len(delivered), 1)

        until(counted, what="the outcomes to be counted")

    state["failing"] = False
    env = server.cli_env(cfg)
    login(server, cfg, tmp_path)
    result = sluice("replay", "--destination", "replay hook", "--status", "expired", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"Re-queued 1 expired dead letter(s) of 'replay hook' ({did})" in result.stdout, result.stdout
    # the probes and the replayed event; the expired attempt is "not delivered"
    assert f"'replay hook' ({did}): {len(delivered)} delivered, 1 not delivered" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    # replay returns once the event left the queue: it was delivered by then
    assert delivered.count(target) == 1
    with server.api() as api:
        assert api.get(f"/destinations/{did}/dead-letters").json()["data"]["deadLetters"] == []
        assert backlog(api, did) == 0

    # Nothing left to replay (by id this time, with --since): exit 0, says so.
    again = sluice("replay", "-d", did, "--since", "1h", "--no-wait", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "No dead letters failed since" in again.stdout


def test_replay_usage_errors_and_unknown_or_ambiguous_destinations(server: Running, tmp_path: Path, cfg: Path) -> None:
    env = server.cli_env(cfg)
    login(server, cfg, tmp_path)

    bad_since = sluice("replay", "--destination", "x", "--since", "yesterday", cwd=tmp_path, env=env)
    assert bad_since.returncode == 2
    assert "'--since'" in bad_since.stderr and "ISO 8601" in bad_since.stderr
    bad_status = sluice("replay", "--destination", "x", "--status", "delivered", cwd=tmp_path, env=env)
    assert bad_status.returncode == 2 and "'--status'" in bad_status.stderr

    unknown = sluice("replay", "--destination", "no such destination", cwd=tmp_path, env=env)
    assert unknown.returncode == 1
    assert "no destination named 'no such destination'" in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr
    tail_unknown = sluice("tail", "--destination", "no such destination", cwd=tmp_path, env=env)
    assert tail_unknown.returncode == 1 and "no destination named" in tail_unknown.stderr

    with server.api() as api:
        source_id, _ = demo_source(api)
        ids = [webhook(api, "twin", "http://127.0.0.1:9/twin", source_id)["id"] for _ in range(2)]
    twins = sluice("replay", "--destination", "twin", cwd=tmp_path, env=env)
    assert twins.returncode == 1
    assert "2 destinations are named 'twin'" in twins.stderr and ids[0] in twins.stderr
    by_id = sluice("replay", "--destination", ids[1], "--no-wait", cwd=tmp_path, env=env)
    assert by_id.returncode == 0, by_id.stderr
    assert "No dead letters to replay" in by_id.stdout


# --- tail -----------------------------------------------------------------------------------------


class Lines:
    """A subprocess's stdout, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def collect(self) -> list[str]:
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                return self.seen


def start_tail(server: Running, cfg: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice", "tail", *args],
        cwd=cwd,
        env=server.cli_env(cfg),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_tail_prints_outcomes_live(server: Running, http_server: HttpServer, tmp_path: Path, cfg: Path) -> None:
    http_server.route("/tail", 200, {"ok": True})
    with server.api() as api:
        source_id, key = demo_source(api)
        webhook(api, "tail hook", http_server.url + "/tail", source_id)
    login(server, cfg, tmp_path)

    proc = start_tail(
        server, cfg, tmp_path, "--destination", "tail hook", "--json", "--max-lines", "2", "--timeout", "60"
    )
    sent: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while proc.poll() is None:  # events every 0.3 s until tail has seen two of them
            assert time.monotonic() < deadline, "tail did not exit"
            sent.append(new_id("tail"))
            track(server, key, sent[-1])
            soon(lambda: proc.poll() is not None, 0.3)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2, out
    assert [line["outcome"] for line in lines] == ["delivered", "delivered"]
    assert {line["messageId"] for line in lines} <= set(sent)
    assert lines[0]["seq"] < lines[1]["seq"] and lines[0]["eventName"] == "Signed Up"
    assert "Following 'tail hook'" in err


def test_tail_text_filter_and_ctrl_c(server: Running, http_server: HttpServer, tmp_path: Path, cfg: Path) -> None:
    http_server.route("/tail-text", 200, {"ok": True})
    with server.api() as api:
        source_id, key = demo_source(api)
        webhook(api, "tail text", http_server.url + "/tail-text", source_id)
    login(server, cfg, tmp_path)

    proc = start_tail(server, cfg, tmp_path, "-d", "tail text", "--outcome", "delivered", "--outcome", "expired")
    out = Lines(proc)
    sent: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not any(sent and line.endswith(tuple(sent)) for line in out.collect()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"tail printed no event line: {out.seen}"
            sent.append(new_id("text"))
            track(server, key, sent[-1], event="Order Completed")
            soon(lambda: any(line.endswith(tuple(sent)) for line in out.collect()), 0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        out.thread.join(timeout=30)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err
    header, *rows = out.collect()
    assert header.split() == ["TIME", "OUTCOME", "REASON", "EVENT", "MESSAGE", "ID"]
    row = next(r for r in rows if r.endswith(tuple(sent)))
    assert "  delivered  " in row and "track Order Completed" in row
    assert row.index("delivered") == header.index("OUTCOME") and row.index("track") == header.index("EVENT")


# --- pieces ---------------------------------------------------------------------------------------


def test_since_accepts_iso_times_and_ages() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_since("2026-11-26T10:00:00Z") == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-26T11:00:00+01:00") == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-26T10:00:00") == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # naive: UTC
    assert parse_since("30m", now) == datetime(2026, 11, 26, 11, 30, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert parse_since("1d", now) == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    for bad in ("yesterday", "2h ago", "-1h", "", "10x"):
        with pytest.raises(ValueError, match="ISO 8601"):
            parse_since(bad, now)


def test_tail_line_columns() -> None:
    line = {
        "seq": 7,
        "at": "2026-11-26T10:00:00.123456Z",
        "outcome": "rejected_by_destination",
        "reason": "the destination answered 400: " + "x" * 100,
        "sourceId": "src_1",
        "messageId": "m-1",
        "type": "identify",
        "eventName": None,
        "attempts": 1,
    }
    text = format_line(line)
    assert text.startswith("2026-11-26T10:00:00.123Z  rejected_by_destination  the destination answered 400")
    assert "…" in text and "identify" in text and text.endswith("  m-1")
    assert format_line({**line, "messageId": None, "type": None}).endswith("-")


def test_no_server_needed_for_usage_errors(tmp_path: Path) -> None:
    env = clean_env(SLUICE_CONFIG_DIR=str(tmp_path / "none"))
    missing = sluice("tail", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "--destination" in missing.stderr
    bad = sluice("tail", "-d", "x", "--outcome", "lost", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "'--outcome'" in bad.stderr
    nobody = sluice("replay", "-d", "x", cwd=tmp_path, env=env)
    assert nobody.returncode == 2 and "sluice login" in nobody.stderr


def test_outcome_lists_match_the_pipeline() -> None:
    assert set(OUTCOMES) == {o.value for o in Outcome}
    assert set(DEAD_LETTER_STATUSES) == {o.value for o in DEAD_LETTER_OUTCOMES}


def test_replay_progress_is_clamped_and_stops_at_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    backlogs = iter([12, 3, 2, 2])  # before the replay the backlog was 2; 5 were replayed

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/destinations/dst_1/queue"
        backlog = next(backlogs, 2)
        return httpx.Response(200, json={"data": {"queue": {"backlog": backlog}}})

    client = ApiClient(Remote("http://sluice.test", "slc_x"), transport=httpx.MockTransport(answer))
    monkeypatch.setattr(delivery_cmd, "POLL_S", 0.01)
    with client:
        assert delivery_cmd._wait(client, "dst_1", 2, 5, timeout=30) == 0
    stuck = ApiClient(
        Remote("http://sluice.test", "slc_x"),
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json={"data": {"queue": {"backlog": 4}}})),
    )
    with stuck:
        started = time.monotonic()
        assert delivery_cmd._wait(stuck, "dst_1", 2, 5, timeout=0.1) == 2
        assert time.monotonic() - started < 5
