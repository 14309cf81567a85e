"""Console sessions: one contract over the in-memory store and the catalog's (a SQLite file and a
PostgreSQL database), what the catalog stores, and two API processes sharing sign-ins.

"Two processes" are two ``Catalog`` objects (two engines, two pools) on one database, each with
its own server built by ``build_server``, as two ``sluice serve --role api`` behind a load
balancer would be (role ``all`` here, which also runs on SQLite and without NATS: the console
and its sessions are the same). Time is an injected clock that the tests move; nothing sleeps.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sluice.catalog import tables
from sluice.catalog.crypto import SecretBox
from sluice.catalog.service import Catalog
from sluice.catalog.sessions import IDLE_S, TOUCH_EVERY_S, id_hash
from sluice.config import Config
from sluice.console.session import COOKIE, MemorySessions, Sessions
from sluice.server import Server, build_server

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
ME = {"name": "owner", "roles": ["WORKSPACE_OWNER"], "functionIds": None, "tokenId": "tok_1"}
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    """Wall-clock time that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def catalog_on(url: str, data_dir: Path, key: str, clock: Clock) -> Catalog:
    """One "API process"'s catalog: every process shares the database and the secret key."""
    return Catalog.open(Config(data_dir=data_dir, database_url=url, secret_key=key), clock=clock)


@dataclass
class Store:
    """A store under test, the clock it reads, and a second process's view of the same sessions."""

    sessions: Sessions
    clock: Clock
    other: Sessions
    count: Callable[[], int]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    clock = Clock()
    if request.param == "memory":
        memory = MemorySessions(clock=clock.seconds)
        yield Store(memory, clock, memory, lambda: len(memory))
        return
    url = (
        f"sqlite:///{tmp_path / 'catalog.db'}" if request.param == "sqlite" else request.getfixturevalue("fresh_pg_url")
    )
    key = secrets.token_hex(32)
    first = catalog_on(url, tmp_path / "a", key, clock)
    second = catalog_on(url, tmp_path / "b", key, clock)

    def count() -> int:
        with first.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tables.console_sessions)).scalar_one())

    try:
        yield Store(first.console_sessions, clock, second.console_sessions, count)
    finally:
        first.close()
        second.close()


@pytest.fixture
def db_url(database_url: str) -> str:
    """A fresh catalog database: a SQLite file, then PostgreSQL (``tests/pg.py``)."""
    return database_url


# --- the contract ----------------------------------------------------------------------------------


def test_create_then_get(store: Store) -> None:
    made = store.sessions.create("the-api-token", ME)
    got = store.other.get(made.sid)
    assert got is not None
    assert (got.sid, got.token, got.csrf, got.me) == (made.sid, "the-api-token", made.csrf, ME)
    assert len(made.sid) >= 43 and len(made.csrf) >= 43 and made.sid != made.csrf
    again = store.sessions.create("the-api-token", ME)
    assert again.sid != made.sid and again.csrf != made.csrf
    for unknown in (None, "", "nope", made.sid + "x"):
        assert store.sessions.get(unknown) is None


def test_sessions_expire_after_twelve_idle_hours_and_use_refreshes_them(store: Store) -> None:
    made = store.sessions.create("tok", ME)
    store.clock.advance(11 * 3600)
    assert store.other.get(made.sid) is not None  # a request refreshes the idle timer
    store.clock.advance(IDLE_S - 1)
    assert store.sessions.get(made.sid) is not None
    store.clock.advance(IDLE_S + 1)
    assert store.other.get(made.sid) is None
    assert store.sessions.get(made.sid) is None  # and it stays gone
    assert store.count() == 0  # an expired session met is deleted


def test_drop_signs_out_everywhere(store: Store) -> None:
    made = store.sessions.create("tok", ME)
    kept = store.sessions.create("tok", ME)
    store.other.drop(made.sid)
    assert store.sessions.get(made.sid) is None
    assert store.other.get(made.sid) is None
    assert store.sessions.get(kept.sid) is not None
    store.sessions.drop(None)
    store.sessions.drop("")
    store.sessions.drop("unknown")  # no error
    assert store.count() == 1


def test_flashes_show_once_on_the_next_page_whichever_process_renders_it(store: Store) -> None:
    made = store.sessions.create("tok", ME)
    posted = store.sessions.get(made.sid)
    assert posted is not None
    posted.flash("Saved.")
    posted.flash("Deploy refused: no instance", "error")
    page = store.other.get(made.sid)
    assert page is not None
    assert page.pop_flashes() == [("ok", "Saved."), ("error", "Deploy refused: no instance")]
    assert page.pop_flashes() == []
    next_page = store.sessions.get(made.sid)
    assert next_page is not None and next_page.pop_flashes() == []


def test_creating_a_session_purges_expired_ones(store: Store) -> None:
    for _ in range(3):
        store.sessions.create("tok", ME)
    store.clock.advance(IDLE_S / 2)
    alive = store.sessions.create("tok", ME)
    store.clock.advance(IDLE_S / 2 + 1)  # the first three are expired, not yet met
    assert store.count() == 4
    newest = store.sessions.create("tok", ME)
    assert store.count() == 2
    assert store.other.get(alive.sid) is not None and store.other.get(newest.sid) is not None


def test_a_session_never_shows_its_credentials_in_repr(store: Store) -> None:
    made = store.sessions.create("the-api-token", ME)
    text = repr(made)
    assert "the-api-token" not in text and made.sid not in text and made.csrf not in text


# --- what the catalog stores ------------------------------------------------------------------------


@pytest.fixture
def catalog(db_url: str, tmp_path: Path) -> Iterator[tuple[Catalog, Clock]]:
    clock = Clock()
    cat = catalog_on(db_url, tmp_path / "data", secrets.token_hex(32), clock)
    try:
        yield cat, clock
    finally:
        cat.close()


def _rows(cat: Catalog) -> list[Any]:
    with cat.engine.connect() as conn:
        return list(conn.execute(select(tables.console_sessions)).all())


def test_the_row_holds_a_hash_of_the_id_and_the_token_sealed(catalog: tuple[Catalog, Clock]) -> None:
    cat, _ = catalog
    made = cat.console_sessions.create("sk_live_the-api-token", ME)
    [row] = _rows(cat)
    assert row.id_hash == id_hash(made.sid) and len(row.id_hash) == 64
    assert made.sid not in str(tuple(row))
    assert SecretBox.is_encrypted(row.token) and "the-api-token" not in row.token
    assert cat.core.box.decrypt(row.token) == "sk_live_the-api-token"
    assert row.csrf == made.csrf and row.me == ME and row.flashes == []


def test_last_seen_is_written_at_most_once_a_minute(catalog: tuple[Catalog, Clock]) -> None:
    cat, clock = catalog

    def last_seen() -> datetime:
        [row] = _rows(cat)
        at: datetime = row.last_seen_at
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    made = cat.console_sessions.create("tok", ME)
    assert last_seen() == T0
    for _ in range(5):
        clock.advance(TOUCH_EVERY_S / 6)
        assert cat.console_sessions.get(made.sid) is not None
    assert last_seen() == T0  # five requests within the minute: no write
    clock.advance(TOUCH_EVERY_S / 6)
    got = cat.console_sessions.get(made.sid)
    assert got is not None and got.last_seen == clock.seconds()
    assert last_seen() == T0 + timedelta(seconds=TOUCH_EVERY_S)


def test_a_session_sealed_under_another_key_is_signed_out(db_url: str, tmp_path: Path) -> None:
    clock = Clock()
    old = catalog_on(db_url, tmp_path / "a", secrets.token_hex(32), clock)
    new = catalog_on(db_url, tmp_path / "b", secrets.token_hex(32), clock)
    try:
        made = old.console_sessions.create("tok", ME)
        assert new.console_sessions.get(made.sid) is None
        assert _rows(new) == []
    finally:
        old.close()
        new.close()


def test_flashes_of_a_session_gone_are_dropped_and_the_list_is_bounded(catalog: tuple[Catalog, Clock]) -> None:
    cat, _ = catalog
    made = cat.console_sessions.create("tok", ME)
    for i in range(30):
        made.flash(f"message {i}")
    page = cat.console_sessions.get(made.sid)
    assert page is not None
    assert page.pop_flashes() == [("ok", f"message {i}") for i in range(10, 30)]
    cat.console_sessions.drop(made.sid)
    made.flash("too late")  # no error, no row comes back
    assert _rows(cat) == []


def test_flashes_from_concurrent_requests_on_two_processes_are_all_kept(db_url: str, tmp_path: Path) -> None:
    clock, key = Clock(), secrets.token_hex(32)
    cats = [catalog_on(db_url, tmp_path / name, key, clock) for name in ("a", "b")]
    try:
        made = cats[0].console_sessions.create("tok", ME)

        def post(index: int) -> None:
            got = cats[index % 2].console_sessions.get(made.sid)
            assert got is not None
            got.flash(f"message {index}")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(post, range(16)))
        page = cats[1].console_sessions.get(made.sid)
        assert page is not None
        assert sorted(page.pop_flashes()) == sorted(("ok", f"message {i}") for i in range(16))
    finally:
        for cat in cats:
            cat.close()


# --- two API processes behind a load balancer ---------------------------------------------------------


@dataclass
class Process:
    """One ``sluice serve --role api``: its catalog, its server, a browser's cookie jar on it."""

    catalog: Catalog
    server: Server
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, sid: str | None = None) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.server.app), base_url="http://sluice")
        if sid is not None:
            client.cookies.set(COOKIE, sid)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()
        await self.server.event_log.close()
        if self.server.dedupe is not None:
            await self.server.dedupe.close()
        self.catalog.close()


@dataclass
class Pair:
    a: Process
    b: Process
    owner_token: str
    clock: Clock


@pytest.fixture
async def pair(db_url: str, tmp_path: Path) -> AsyncIterator[Pair]:
    clock = Clock()
    key = secrets.token_hex(32)
    processes: list[Process] = []
    try:
        for name in ("a", "b"):
            config = Config(data_dir=tmp_path / name, database_url=db_url, secret_key=key)
            catalog = Catalog.open(config, clock=clock)
            processes.append(Process(catalog, build_server(catalog, config)))  # lifespan not started
        token = processes[0].catalog.admin.bootstrap_owner(tmp_path / "a", None)
        assert token is not None
        yield Pair(processes[0], processes[1], token, clock)
    finally:
        for process in processes:
            await process.close()


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    page = await client.get("/login")
    match = CSRF_FIELD.search(page.text)
    assert page.status_code == 200 and match is not None
    response = await client.post("/login", data={"csrf": match.group(1), "next": "/functions", "token": token})
    assert response.status_code == 303, response.text
    sid = client.cookies.get(COOKIE)
    assert sid
    return sid


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/functions")
    assert page.status_code == 200, page.text
    match = CSRF_META.search(page.text)
    assert match is not None
    return match.group(1)


async def test_two_api_processes_share_sign_in_flashes_and_sign_out(pair: Pair) -> None:
    on_a = pair.a.client()
    sid = await sign_in(on_a, pair.owner_token)
    on_b = pair.b.client(sid)  # the load balancer sends the next request elsewhere
    page = await on_b.get("/functions")
    assert page.status_code == 200
    assert 'data-test="signed-in-as"' in page.text

    # a form posted to A (its CSRF token read from a page of B), its message shown by B
    created = await on_a.post("/functions", data={"csrf": await csrf_of(on_b), "displayName": "Enrich"})
    assert created.status_code == 303, created.text
    shown = await on_b.get(created.headers["location"])
    assert shown.status_code == 200 and "Created Enrich from the Python template." in shown.text
    assert "Created Enrich" not in (await on_a.get(created.headers["location"])).text  # shown once

    # signing out on B ends the session on A too: real revocation
    out = await on_b.post("/logout", data={"csrf": await csrf_of(on_b)})
    assert out.status_code == 303
    refused = await pair.a.client(sid).get("/functions")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    assert (await pair.b.client(sid).get("/functions")).status_code == 303


async def test_idle_expiry_counts_a_request_on_any_process(pair: Pair) -> None:
    sid = await sign_in(pair.a.client(), pair.owner_token)
    pair.clock.advance(IDLE_S - 60)
    assert (await pair.b.client(sid).get("/functions")).status_code == 200  # refreshed by B
    pair.clock.advance(IDLE_S - 60)
    assert (await pair.a.client(sid).get("/functions")).status_code == 200  # A sees B's refresh
    pair.clock.advance(IDLE_S + 1)
    for process in (pair.a, pair.b):
        response = await process.client(sid).get("/functions")
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
