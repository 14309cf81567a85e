"""The scale-out :class:`~sluice.queue.base.EventLog` on NATS JetStream (``SLUICE_QUEUE_URL=nats://…``).

Layout on the server (``prefix`` defaults to ``sluice``; ids that are not ``[A-Za-z0-9_-]`` are
written as ``=`` + hex):

* a **stream per source** ``<prefix>-src-<source>`` (subject ``<prefix>.src.<source>``, file
  storage, ``replicas`` configurable, limits retention with ``MaxAge`` = ``stream_max_age_s``);
* a **durable pull consumer per destination** on each of its sources' streams, ``d_<destination>``,
  created with ``DeliverPolicy=new`` when the destination subscribes (so it sees events from now
  on) and deleted when it unsubscribes from that source; explicit acks, ``AckWait`` =
  ``ack_wait_s``;
* a **dead-letter stream** ``<prefix>-dead`` (subject ``<prefix>.dead.<destination>``, ``MaxAge`` =
  ``dead_letter_retention_s``): the event with its outcome, reason and attempt history in headers;
* a **replay stream** ``<prefix>-replay`` (work-queue retention, subject
  ``<prefix>.replay.<destination>``) with a durable consumer per destination: replay moves dead
  letters there, and they are leased before new events;
* a **key-value bucket** ``<prefix>-attempts`` holding, for events that failed at least once, their
  attempt count and first attempt time (JetStream's delivery count also counts lost leases).

How the Protocol maps (what differs from the embedded log is documented in docs/scale-out.md):

* ``append`` publishes and returns once every publish is acknowledged by the server (stored).
* ``lease`` pulls (``no_wait``) from the destination's replay consumer, then its source consumers.
  An entry id is ``<source>:<stream sequence>`` — stable across redeliveries and replays. The log
  remembers the reply subject of every entry it handed out (``ack``/``retry_at``/``dead_letter`` of
  an id this process does not hold are ignored, as the contract says); when ``lease_s`` is longer
  than ``AckWait`` it sends *in-progress* acks until ``lease_s`` has passed.
* ``ack`` sends ``+ACK``; ``retry_at`` records the attempt in the bucket, then ``-NAK`` with the
  delay (``NakWithDelay``); ``dead_letter`` publishes to the dead-letter stream, then acks. The
  last message of each group is sent as a request, so the server has applied them all when the
  call returns (acks are processed in order per consumer).
* Times: ``appended_at`` is the server's timestamp of the message; retry delays are computed from
  the injected clock; ``AckWait``, delays and ``MaxAge`` run on the server's clock. After a lost
  lease (no failed attempt recorded) ``first_attempt_at`` is the append time.
* Retention is the server's (``MaxAge`` on each stream): ``prune`` has nothing to do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import secrets
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from sluice.queue.base import (
    DEFAULT_DEAD_LETTER_RETENTION_S,
    DeadLetter,
    DeadLetterRecord,
    DestinationStats,
    Leased,
    PruneResult,
    QueueError,
    QueueStats,
)

__all__ = ["DEFAULT_ACK_WAIT_S", "DEFAULT_STREAM_MAX_AGE_S", "NatsEventLog", "decode_name", "encode_name"]

DEFAULT_ACK_WAIT_S = 30.0
DEFAULT_STREAM_MAX_AGE_S = 7 * 24 * 3600.0
API_TIMEOUT_S = 5.0
NS = 1_000_000_000
_PLAIN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def encode_name(value: str) -> str:
    """A source or destination id as a token valid in stream, consumer, subject and key names."""
    return value if _PLAIN.fullmatch(value) else "=" + value.encode().hex()


def decode_name(token: str) -> str:
    return bytes.fromhex(token[1:]).decode() if token.startswith("=") else token


@dataclass(slots=True)
class _Held:
    """An entry this process leased and has not settled: where to send its ack."""

    reply: str
    stream: str
    payload: bytes
    source_id: str
    appended_at: float
    attempts: int
    first_attempt_at: float | None
    leased_at: float
    lease_until: float  # monotonic
    recorded: bool  # an attempts record exists in the bucket


def _reply_tokens(reply: str) -> tuple[str, int, int, int]:
    """(stream, delivery count, stream sequence, timestamp ns) of a ``$JS.ACK…`` reply subject."""
    parts = reply.split(".")
    if len(parts) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        base = 2
    elif len(parts) >= 11:  # with domain and account hash tokens (v2 format)
        base = 4
    else:
        raise QueueError(f"unexpected JetStream reply subject {reply!r}")
    return parts[base], int(parts[base + 2]), int(parts[base + 3]), int(parts[base + 5])


class NatsEventLog:
    """Durable per-source event log on NATS JetStream (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "sluice",
        clock: Callable[[], float] = time.time,
        ack_wait_s: float = DEFAULT_ACK_WAIT_S,
        replicas: int = 1,
        stream_max_age_s: float = DEFAULT_STREAM_MAX_AGE_S,
        dead_letter_retention_s: float = DEFAULT_DEAD_LETTER_RETENTION_S,
        connect_timeout_s: float = 2.0,
    ) -> None:
        if not _PLAIN.fullmatch(prefix):
            raise QueueError(f"the NATS name prefix must be letters, digits, - or _, got {prefix!r}")
        parsed = urlsplit(url)
        if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
            raise QueueError(f"SLUICE_QUEUE_URL must look like nats://host:4222, got {url!r}")
        self.url = url
        self.prefix = prefix
        self.ack_wait_s = ack_wait_s
        self.replicas = replicas
        self.stream_max_age_s = stream_max_age_s
        self.dead_letter_retention_s = dead_letter_retention_s
        self.connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._nc: Client | None = None
        self._connect_lock = asyncio.Lock()
        self._closed = False
        self._streams: set[str] = set()  # streams known to exist
        self._subs: dict[str, set[str]] = {}  # destination -> sources (this process's view)
        self._replay_ready: set[str] = set()
        self._held: dict[str, dict[str, _Held]] = {}
        self._inbox = ""
        self._inbox_sub: Subscription | None = None
        self._waiting: dict[str, asyncio.Queue[Msg]] = {}
        self._tokens = itertools.count()
        self._keepalive: asyncio.Task[None] | None = None

    # -- names -------------------------------------------------------------------------------------

    def source_stream(self, source_id: str) -> str:
        return f"{self.prefix}-src-{encode_name(source_id)}"

    def _source_subject(self, source_id: str) -> str:
        return f"{self.prefix}.src.{encode_name(source_id)}"

    @property
    def _dead_stream(self) -> str:
        return f"{self.prefix}-dead"

    @property
    def _replay_stream(self) -> str:
        return f"{self.prefix}-replay"

    @property
    def _attempts_stream(self) -> str:
        return f"{self.prefix}-attempts"

    def _attempts_subject(self, destination_id: str, entry_id: str) -> str:
        return f"{self.prefix}.attempts.{encode_name(destination_id)}.{entry_id.replace(':', '.')}"

    @staticmethod
    def _durable(destination_id: str) -> str:
        return f"d_{encode_name(destination_id)}"

    # -- connection and API --------------------------------------------------------------------------

    async def _conn(self) -> Client:
        if self._closed:
            raise QueueError("the event log is closed")
        if self._nc is not None:
            return self._nc
        async with self._connect_lock:
            if self._nc is None:
                self._nc = await self._connect()
                self._inbox = f"_INBOX.{secrets.token_hex(11)}"
                self._inbox_sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_inbox)
                await self._ensure_fixed_streams()
            return self._nc

    async def _connect(self) -> Client:
        parsed = urlsplit(self.url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        try:  # nats-py retries a refused first connection on its own: probe the port first
            await asyncio.wait_for(asyncio.to_thread(socket.create_connection, (host, port), 1.0), 2.0)
        except (OSError, TimeoutError) as exc:
            raise QueueError(f"cannot reach NATS at {host}:{port} ({self.url}): {exc}") from None
        try:
            return await nats.connect(
                servers=[self.url],
                connect_timeout=self.connect_timeout_s,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
        except Exception as exc:  # nats-py raises many kinds
            raise QueueError(f"cannot connect to NATS at {self.url}: {exc}") from exc

    async def _api(self, subject: str, body: dict[str, Any] | None = None, *, ok_404: bool = False) -> dict[str, Any]:
        nc = await self._conn()
        try:
            msg = await nc.request(f"$JS.API.{subject}", orjson.dumps(body) if body else b"", timeout=API_TIMEOUT_S)
        except Exception as exc:
            raise QueueError(f"JetStream API {subject} failed: {exc!r}") from exc
        response: dict[str, Any] = orjson.loads(msg.data)
        error = response.get("error")
        if error:
            if ok_404 and error.get("code") == 404:
                return {}
            raise QueueError(f"JetStream API {subject}: {error.get('description')} ({error.get('err_code')})")
        return response

    async def _ensure_stream(self, name: str, config: dict[str, Any]) -> None:
        if name in self._streams:
            return
        if not await self._api(f"STREAM.INFO.{name}", ok_404=True):
            body = {"name": name, "storage": "file", "num_replicas": self.replicas, **config}
            try:
                await self._api(f"STREAM.CREATE.{name}", body)
            except QueueError:  # created meanwhile by another process (maybe with other limits)
                if not await self._api(f"STREAM.INFO.{name}", ok_404=True):
                    raise
        self._streams.add(name)

    async def _ensure_fixed_streams(self) -> None:
        p = self.prefix
        await self._ensure_stream(
            self._dead_stream, {"subjects": [f"{p}.dead.>"], "max_age": int(self.dead_letter_retention_s * NS)}
        )
        await self._ensure_stream(self._replay_stream, {"subjects": [f"{p}.replay.>"], "retention": "workqueue"})
        await self._ensure_stream(
            self._attempts_stream,
            {"subjects": [f"{p}.attempts.>"], "max_msgs_per_subject": 1, "max_age": int(self.stream_max_age_s * NS)},
        )

    async def _ensure_source(self, source_id: str) -> str:
        name = self.source_stream(source_id)
        window = min(120.0, self.stream_max_age_s)  # unused (no Nats-Msg-Id), but must not exceed MaxAge
        config = {
            "subjects": [self._source_subject(source_id)],
            "max_age": int(self.stream_max_age_s * NS),
            "duplicate_window": int(window * NS),
        }
        await self._ensure_stream(name, config)
        return name

    async def _ensure_consumer(self, stream: str, durable: str, extra: dict[str, Any]) -> None:
        if await self._api(f"CONSUMER.INFO.{stream}.{durable}", ok_404=True):
            return
        config = {
            "durable_name": durable,
            "ack_policy": "explicit",
            "ack_wait": int(self.ack_wait_s * NS),
            "max_ack_pending": -1,
            "max_deliver": -1,
            **extra,
        }
        await self._api(f"CONSUMER.DURABLE.CREATE.{stream}.{durable}", {"stream_name": stream, "config": config})

    async def _ensure_replay(self, destination_id: str) -> None:
        if destination_id in self._replay_ready:
            return
        subject = f"{self.prefix}.replay.{encode_name(destination_id)}"
        await self._ensure_consumer(
            self._replay_stream, self._durable(destination_id), {"deliver_policy": "all", "filter_subject": subject}
        )
        self._replay_ready.add(destination_id)

    # -- pulling -----------------------------------------------------------------------------------------

    async def _on_inbox(self, msg: Msg) -> None:
        queue = self._waiting.get(msg.subject)
        if queue is not None:
            queue.put_nowait(msg)

    async def _pull(self, stream: str, consumer: str, batch: int) -> list[Msg]:
        """Up to ``batch`` messages available now (``no_wait``); [] when there are none or no consumer.

        Pulled messages arrive with their stream subject on the request's reply subscription, so each
        pull has a subscription of its own (SUB and UNSUB cost no round trip)."""
        nc = await self._conn()
        subscription = await nc.subscribe(nc.new_inbox())
        out: list[Msg] = []
        try:
            request = orjson.dumps({"batch": batch, "no_wait": True})
            await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", request, reply=subscription.subject)
            while len(out) < batch:
                try:
                    msg = await subscription.next_msg(API_TIMEOUT_S)
                except Exception:  # nats' TimeoutError
                    break
                if msg.headers and "Status" in msg.headers and not msg.reply:
                    break  # 404 no messages, 408 fewer than asked for, 409 consumer deleted …
                out.append(msg)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        return out

    # -- the Protocol ----------------------------------------------------------------------------------

    async def append(self, source_id: str, events: Sequence[bytes]) -> int:
        nc = await self._conn()
        if not events:
            return 0
        stream = await self._ensure_source(source_id)
        subject = self._source_subject(source_id)
        reply_base = f"{self._inbox}.p{next(self._tokens)}_"
        queues: list[asyncio.Queue[Msg]] = []
        try:
            for i, payload in enumerate(events):
                reply = f"{reply_base}{i}"
                queue: asyncio.Queue[Msg] = asyncio.Queue(1)
                self._waiting[reply] = queue
                queues.append(queue)
                await nc.publish(subject, bytes(payload), reply=reply)
            async with asyncio.timeout(API_TIMEOUT_S * 2):
                for queue in queues:
                    ack = orjson.loads((await queue.get()).data or b"{}")
                    if ack.get("stream") != stream:
                        raise QueueError(f"NATS did not store an event of {source_id}: {ack.get('error') or ack}")
        except TimeoutError:
            raise QueueError(f"NATS did not acknowledge the events of {source_id} in time") from None
        finally:
            for i in range(len(queues)):
                self._waiting.pop(f"{reply_base}{i}", None)
        return len(events)

    async def subscribe(self, destination_id: str, source_ids: Collection[str]) -> None:
        await self._conn()
        wanted = set(source_ids)
        had = self._subs.get(destination_id, set())
        durable = self._durable(destination_id)
        for source_id in had - wanted:
            await self._api(f"CONSUMER.DELETE.{self.source_stream(source_id)}.{durable}", ok_404=True)
        await self._ensure_replay(destination_id)
        for source_id in wanted:
            stream = await self._ensure_source(source_id)
            await self._ensure_consumer(stream, durable, {"deliver_policy": "new"})
        self._subs[destination_id] = wanted

    async def lease(self, destination_id: str, max_events: int, lease_s: float) -> list[Leased]:
        await self._conn()
        if max_events <= 0 or destination_id not in self._subs:
            return []
        durable = self._durable(destination_id)
        got: list[tuple[Msg, str | None]] = [
            (m, None) for m in await self._pull(self._replay_stream, durable, max_events)
        ]
        for source_id in sorted(self._subs[destination_id]):
            if len(got) >= max_events:
                break
            stream = self.source_stream(source_id)
            got.extend((m, source_id) for m in await self._pull(stream, durable, max_events - len(got)))
        if not got:
            return []
        return await self._hold(destination_id, got, lease_s)

    async def _hold(self, destination_id: str, got: list[tuple[Msg, str | None]], lease_s: float) -> list[Leased]:
        now, mono = self._clock(), time.monotonic()
        held = self._held.setdefault(destination_id, {})
        out: list[Leased] = []
        redelivered: list[tuple[int, str]] = []
        for msg, source_id in got:
            stream, delivered, seq, ts = _reply_tokens(msg.reply)
            if source_id is None:  # a replayed dead letter: its identity travels in headers
                headers = msg.headers or {}
                entry_id = headers.get("Sluice-Entry", f"replay:{seq}")
                source = headers.get("Sluice-Source", "")
                appended_at = float(headers.get("Sluice-Appended-At", ts / NS))
            else:
                entry_id = f"{encode_name(source_id)}:{seq}"
                source = source_id
                appended_at = ts / NS
            entry = _Held(msg.reply, stream, msg.data, source, appended_at, 0, None, now, mono + lease_s, False)
            if delivered > 1:
                redelivered.append((len(out), entry_id))
                entry.first_attempt_at = appended_at
            held[entry_id] = entry
            out.append(Leased(entry_id, source, msg.data, 0, None, appended_at))
        if redelivered:
            records = await asyncio.gather(*(self._read_attempts(destination_id, e) for _, e in redelivered))
            for (index, entry_id), record in zip(redelivered, records, strict=True):
                entry = held[entry_id]
                if record is not None:
                    entry.attempts, entry.first_attempt_at, entry.recorded = record[0], record[1], True
                lease = out[index]
                out[index] = Leased(
                    entry_id, lease.source_id, lease.payload, entry.attempts, entry.first_attempt_at, lease.appended_at
                )
        if lease_s > self.ack_wait_s and self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive(), name="sluice-nats-keepalive")
        return out

    async def _read_attempts(self, destination_id: str, entry_id: str) -> tuple[int, float] | None:
        subject = self._attempts_subject(destination_id, entry_id)
        response = await self._api(f"STREAM.MSG.GET.{self._attempts_stream}", {"last_by_subj": subject}, ok_404=True)
        data = base64.b64decode(response.get("message", {}).get("data") or b"")
        if not data:  # none, or forgotten (an empty record replaces it)
            return None
        record = orjson.loads(data)
        return int(record["a"]), float(record["f"])

    async def _write_attempts(self, destination_id: str, entry_id: str, attempts: int, first: float) -> None:
        nc = await self._conn()
        body = orjson.dumps({"a": attempts, "f": first})
        try:
            msg = await nc.request(self._attempts_subject(destination_id, entry_id), body, timeout=API_TIMEOUT_S)
        except Exception as exc:
            raise QueueError(f"NATS did not store an attempt record: {exc!r}") from exc
        if b'"error"' in msg.data:
            raise QueueError(f"NATS did not store an attempt record: {msg.data[:200]!r}")

    async def _forget_attempts(self, destination_id: str, entry_ids: Sequence[str]) -> None:
        nc = await self._conn()
        for entry_id in entry_ids:  # the stream keeps one message per subject: an empty one replaces it
            await nc.publish(self._attempts_subject(destination_id, entry_id), b"")

    async def _send(self, replies: Sequence[tuple[str, str, bytes]]) -> None:
        """Send ack bodies to reply subjects; the last one per stream as a request (applied when we return)."""
        nc = await self._conn()
        last: dict[str, int] = {stream: i for i, (_, stream, _) in enumerate(replies)}
        waits = []
        for i, (reply, stream, body) in enumerate(replies):
            if last[stream] == i:
                waits.append(nc.request(reply, body, timeout=API_TIMEOUT_S))
            else:
                await nc.publish(reply, body)
        try:
            await asyncio.gather(*waits)
        except Exception as exc:
            raise QueueError(f"NATS did not confirm an acknowledgement: {exc!r}") from exc

    def _take(self, destination_id: str, entry_ids: Collection[str]) -> list[tuple[str, _Held]]:
        held = self._held.get(destination_id, {})
        return [(e, held.pop(e)) for e in dict.fromkeys(entry_ids) if e in held]

    async def ack(self, destination_id: str, entry_ids: Collection[str]) -> None:
        await self._conn()
        taken = self._take(destination_id, entry_ids)
        if not taken:
            return
        await self._send([(h.reply, h.stream, b"+ACK") for _, h in taken])
        recorded = [e for e, h in taken if h.recorded]
        if recorded:
            await self._forget_attempts(destination_id, recorded)

    async def retry_at(self, destination_id: str, entry_ids_with_times: Mapping[str, float]) -> None:
        await self._conn()
        taken = self._take(destination_id, entry_ids_with_times)
        if not taken:
            return
        await asyncio.gather(
            *(
                self._write_attempts(destination_id, e, h.attempts + 1, h.first_attempt_at or h.leased_at)
                for e, h in taken
            )
        )
        now = self._clock()
        bodies = []
        for entry_id, h in taken:
            delay = max(0.0, entry_ids_with_times[entry_id] - now)
            nak = b"-NAK " + orjson.dumps({"delay": int(delay * NS)}) if delay > 0.001 else b"-NAK"
            bodies.append((h.reply, h.stream, nak))
        await self._send(bodies)

    async def dead_letter(self, destination_id: str, entries: Sequence[DeadLetter]) -> None:
        await self._conn()
        by_id = {d.entry_id: d for d in entries}
        taken = self._take(destination_id, by_id)
        if not taken:
            return
        nc = await self._conn()
        subject = f"{self.prefix}.dead.{encode_name(destination_id)}"
        stored = []
        for entry_id, h in taken:
            dead = by_id[entry_id]
            payload = h.payload
            headers = {
                "Sluice-Entry": entry_id,
                "Sluice-Source": h.source_id,
                "Sluice-Status": dead.status,
                "Sluice-Reason": dead.reason.replace("\r", " ").replace("\n", " "),
                "Sluice-Failed-At": repr(dead.failed_at),
                "Sluice-Attempts": str(h.attempts + 1),
                "Sluice-First-Attempt-At": repr(h.first_attempt_at or h.leased_at),
                "Sluice-Appended-At": repr(h.appended_at),
            }
            stored.append(nc.request(subject, payload, timeout=API_TIMEOUT_S, headers=headers))
        try:
            for response in await asyncio.gather(*stored):
                if b'"error"' in response.data:
                    raise QueueError(f"NATS did not store a dead letter: {response.data[:200]!r}")
        except QueueError:
            raise
        except Exception as exc:
            raise QueueError(f"NATS did not store a dead letter: {exc!r}") from exc
        await self._send([(h.reply, h.stream, b"+ACK") for _, h in taken])
        recorded = [e for e, h in taken if h.recorded]
        if recorded:
            await self._forget_attempts(destination_id, recorded)

    async def _keep_alive(self) -> None:
        """In-progress acks for entries leased for longer than ``AckWait``; drops stale leases."""
        every = max(0.05, self.ack_wait_s / 3)
        while not self._closed:
            await asyncio.sleep(every)
            mono = time.monotonic()
            with contextlib.suppress(Exception):
                nc = await self._conn()
                for held in self._held.values():
                    for entry_id in [e for e, h in held.items() if h.lease_until < mono - self.ack_wait_s]:
                        del held[entry_id]  # the server redelivered it long ago
                    for h in held.values():
                        if h.lease_until > mono:
                            await nc.publish(h.reply, b"+WPI")

    # -- dead letters --------------------------------------------------------------------------------

    async def _read_dead(self, destination_id: str) -> list[tuple[int, DeadLetterRecord]]:
        """Every dead letter of a destination with its stream sequence, in failure order."""
        subject = f"{self.prefix}.dead.{encode_name(destination_id)}"
        config = {
            "deliver_policy": "all",
            "ack_policy": "none",
            "filter_subject": subject,
            "inactive_threshold": 60 * NS,
            "mem_storage": True,
        }
        created = await self._api(
            f"CONSUMER.CREATE.{self._dead_stream}", {"stream_name": self._dead_stream, "config": config}
        )
        name = created["name"]
        out: list[tuple[int, DeadLetterRecord]] = []
        try:
            while batch := await self._pull(self._dead_stream, name, 1000):
                for msg in batch:
                    _, _, seq, _ = _reply_tokens(msg.reply)
                    h = msg.headers or {}
                    first = h.get("Sluice-First-Attempt-At", "None")
                    record = DeadLetterRecord(
                        entry_id=h.get("Sluice-Entry", ""),
                        source_id=h.get("Sluice-Source", ""),
                        payload=msg.data,
                        status=h.get("Sluice-Status", ""),
                        reason=h.get("Sluice-Reason", ""),
                        failed_at=float(h.get("Sluice-Failed-At", "0")),
                        attempts=int(h.get("Sluice-Attempts", "0")),
                        first_attempt_at=None if first == "None" else float(first),
                        appended_at=float(h.get("Sluice-Appended-At", "0")),
                    )
                    out.append((seq, record))
                if len(batch) < 1000:
                    break
        finally:
            await self._api(f"CONSUMER.DELETE.{self._dead_stream}.{name}", ok_404=True)
        out.sort(key=lambda item: (item[1].failed_at, item[0]))
        return out

    @staticmethod
    def _matches(record: DeadLetterRecord, status: str | None, since: float | None) -> bool:
        return (status is None or record.status == status) and (since is None or record.failed_at >= since)

    async def dead_letters(
        self, destination_id: str, *, status: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        records = [r for _, r in await self._read_dead(destination_id) if self._matches(r, status, since)]
        return records[: max(0, limit)]

    async def replay(self, destination_id: str, *, status: str | None = None, since: float | None = None) -> int:
        """Publish matching dead letters to the destination's replay subject, then delete them."""
        matching = [(s, r) for s, r in await self._read_dead(destination_id) if self._matches(r, status, since)]
        if not matching:
            return 0
        await self._ensure_replay(destination_id)
        nc = await self._conn()
        subject = f"{self.prefix}.replay.{encode_name(destination_id)}"
        for start in range(0, len(matching), 500):
            chunk = matching[start : start + 500]
            published = [
                nc.request(
                    subject,
                    r.payload,
                    timeout=API_TIMEOUT_S,
                    headers={
                        "Sluice-Entry": r.entry_id,
                        "Sluice-Source": r.source_id,
                        "Sluice-Appended-At": repr(r.appended_at),
                    },
                )
                for _, r in chunk
            ]
            try:
                responses = await asyncio.gather(*published)
            except Exception as exc:
                raise QueueError(f"NATS did not store a replayed event: {exc!r}") from exc
            if any(b'"error"' in m.data for m in responses):
                raise QueueError("NATS did not store a replayed event")
            await asyncio.gather(
                *(
                    self._api(f"STREAM.MSG.DELETE.{self._dead_stream}", {"seq": seq, "no_erase": True}, ok_404=True)
                    for seq, _ in chunk
                )
            )
        return len(matching)

    # -- inspection ----------------------------------------------------------------------------------

    async def _paged(self, subject: str, key: str, body: dict[str, Any] | None = None) -> list[Any]:
        items: list[Any] = []
        while True:
            response = await self._api(subject, {**(body or {}), "offset": len(items)})
            page = response.get(key) or []
            items.extend(page)
            if not page or len(items) >= int(response.get("total", 0)):
                return items

    async def stats(self) -> QueueStats:
        await self._conn()
        counts: dict[str, list[int]] = {}  # destination -> [new, scheduled, leased, dead]

        def row(destination_id: str) -> list[int]:
            return counts.setdefault(destination_id, [0, 0, 0, 0])

        for destination_id in self._subs:
            row(destination_id)
        events = 0
        streams = await self._paged("STREAM.NAMES", "streams", {"subject": f"{self.prefix}.src.>"})
        for stream in streams:
            info = await self._api(f"STREAM.INFO.{stream}", ok_404=True)
            events += int(info.get("state", {}).get("messages", 0)) if info else 0
            for consumer in await self._paged(f"CONSUMER.LIST.{stream}", "consumers"):
                if consumer["name"].startswith("d_"):
                    r = row(decode_name(consumer["name"][2:]))
                    r[0] += int(consumer.get("num_pending", 0))
                    r[2] += int(consumer.get("num_ack_pending", 0))
        for consumer in await self._paged(f"CONSUMER.LIST.{self._replay_stream}", "consumers"):
            if consumer["name"].startswith("d_"):
                r = row(decode_name(consumer["name"][2:]))
                r[1] += int(consumer.get("num_pending", 0))
                r[2] += int(consumer.get("num_ack_pending", 0))
        dead = await self._api(f"STREAM.INFO.{self._dead_stream}", {"subjects_filter": f"{self.prefix}.dead.>"})
        for subject, n in (dead.get("state", {}).get("subjects") or {}).items():
            row(decode_name(subject.rsplit(".", 1)[1]))[3] += int(n)
        return QueueStats(
            events=events,
            destinations={
                d: DestinationStats(new=r[0], scheduled=r[1], leased=r[2], dead_letters=r[3]) for d, r in counts.items()
            },
        )

    async def backlog(self, destination_id: str | None = None) -> int:
        stats = await self.stats()
        if destination_id is None:
            return stats.backlog
        found = stats.destinations.get(destination_id)
        return found.backlog if found is not None else 0

    async def prune(self, now: float | None = None) -> PruneResult:
        """Retention is the server's (``MaxAge`` on every stream): nothing to do here."""
        await self._conn()
        return PruneResult(events_removed=0, dead_letters_removed=0)

    async def delete_everything(self) -> None:
        """Remove every stream of this prefix (tests, ``sluice`` maintenance): irreversible."""
        names = await self._paged("STREAM.NAMES", "streams")
        for name in names:
            if name.startswith(f"{self.prefix}-"):
                await self._api(f"STREAM.DELETE.{name}", ok_404=True)
        self._streams.clear()
        self._replay_ready.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
