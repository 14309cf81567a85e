"""In-memory :class:`~sluice.queue.base.EventLog` for unit tests: the SQLite log's exact semantics.

It mirrors the SQLite design (see :mod:`sluice.queue.sqlite`): one global sequence number per
event, a per-source offset, a per-(destination, source) cursor of the last offset handed out,
and per-destination delivery and dead-letter entries created lazily at the first lease.
Nothing is durable; ``append`` "commits" immediately.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from sluice.queue.base import (
    DEFAULT_ACKED_RETENTION_S,
    DEFAULT_DEAD_LETTER_RETENTION_S,
    DeadLetter,
    DeadLetterRecord,
    DestinationStats,
    Leased,
    PruneResult,
    QueueError,
    QueueStats,
    parse_entry_id,
)


@dataclass(slots=True)
class _Event:
    seq: int
    source_id: str
    off: int
    payload: bytes
    appended_at: float


@dataclass(slots=True)
class _Delivery:
    due_at: float
    leased: bool
    attempts: int
    first_attempt_at: float | None


@dataclass(slots=True)
class _Dead:
    status: str
    reason: str
    failed_at: float
    attempts: int
    first_attempt_at: float | None


class MemoryEventLog:
    """The in-memory twin of :class:`~sluice.queue.sqlite.SqliteEventLog`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        acked_retention_s: float = DEFAULT_ACKED_RETENTION_S,
        dead_letter_retention_s: float = DEFAULT_DEAD_LETTER_RETENTION_S,
    ) -> None:
        self._clock = clock
        self.acked_retention_s = acked_retention_s
        self.dead_letter_retention_s = dead_letter_retention_s
        self._events: dict[int, _Event] = {}
        self._offsets: dict[str, dict[int, int]] = {}  # source -> off -> seq
        self._heads: dict[str, int] = {}  # source -> last offset appended
        self._cursors: dict[str, dict[str, int]] = {}  # destination -> source -> last offset taken
        self._deliveries: dict[str, dict[int, _Delivery]] = {}
        self._dead: dict[str, dict[int, _Dead]] = {}
        self._seq = 0
        self._last_appended_at = float("-inf")
        self._closed = False
        self.commits = 0

    def _check(self) -> None:
        if self._closed:
            raise QueueError("the event log is closed")

    async def append(self, source_id: str, events: Sequence[bytes]) -> int:
        self._check()
        if not events:
            return 0
        now = max(self._clock(), self._last_appended_at)
        self._last_appended_at = now
        offsets = self._offsets.setdefault(source_id, {})
        head = self._heads.get(source_id, 0)
        for payload in events:
            self._seq += 1
            head += 1
            self._events[self._seq] = _Event(self._seq, source_id, head, bytes(payload), now)
            offsets[head] = self._seq
        self._heads[source_id] = head
        self.commits += 1
        return len(events)

    async def subscribe(self, destination_id: str, source_ids: Collection[str]) -> None:
        self._check()
        cursors = self._cursors.setdefault(destination_id, {})
        wanted = set(source_ids)
        for source_id in [s for s in cursors if s not in wanted]:
            del cursors[source_id]
        for source_id in wanted:
            cursors.setdefault(source_id, self._heads.get(source_id, 0))

    async def lease(self, destination_id: str, max_events: int, lease_s: float) -> list[Leased]:
        self._check()
        if max_events <= 0:
            return []
        now = self._clock()
        until = now + lease_s
        out: list[Leased] = []
        deliveries = self._deliveries.setdefault(destination_id, {})
        due = sorted((d.due_at, seq) for seq, d in deliveries.items() if d.due_at <= now)[:max_events]
        for _, seq in due:
            d = deliveries[seq]
            first = d.first_attempt_at
            d.first_attempt_at = now if first is None else first
            d.leased = True
            d.due_at = until
            ev = self._events[seq]
            out.append(Leased(str(seq), ev.source_id, ev.payload, d.attempts, first, ev.appended_at))
        remaining = max_events - len(out)
        cursors = self._cursors.get(destination_id, {})
        if remaining <= 0 or not cursors:
            return out
        candidates: list[tuple[int, str, int]] = []
        for source_id, cursor in cursors.items():
            offsets = self._offsets.get(source_id, {})
            head = self._heads.get(source_id, 0)
            for off in range(cursor + 1, min(head, cursor + remaining) + 1):
                candidates.append((offsets[off], source_id, off))
        candidates.sort()
        for seq, source_id, off in candidates[:remaining]:
            ev = self._events[seq]
            deliveries[seq] = _Delivery(due_at=until, leased=True, attempts=0, first_attempt_at=now)
            cursors[source_id] = max(cursors[source_id], off)
            out.append(Leased(str(seq), source_id, ev.payload, 0, None, ev.appended_at))
        return out

    def _held(self, destination_id: str, entry_id: str) -> tuple[int, _Delivery] | None:
        seq = parse_entry_id(entry_id)
        if seq is None:
            return None
        d = self._deliveries.get(destination_id, {}).get(seq)
        return None if d is None else (seq, d)

    async def ack(self, destination_id: str, entry_ids: Collection[str]) -> None:
        self._check()
        deliveries = self._deliveries.get(destination_id, {})
        for entry_id in entry_ids:
            seq = parse_entry_id(entry_id)
            if seq is not None:
                deliveries.pop(seq, None)

    async def retry_at(self, destination_id: str, entry_ids_with_times: Mapping[str, float]) -> None:
        self._check()
        for entry_id, at in entry_ids_with_times.items():
            held = self._held(destination_id, entry_id)
            if held is not None:
                d = held[1]
                d.attempts += 1
                d.due_at = float(at)
                d.leased = False

    async def dead_letter(self, destination_id: str, entries: Sequence[DeadLetter]) -> None:
        self._check()
        dead = self._dead.setdefault(destination_id, {})
        for entry in entries:
            held = self._held(destination_id, entry.entry_id)
            if held is None:
                continue
            seq, d = held
            del self._deliveries[destination_id][seq]
            dead[seq] = _Dead(entry.status, entry.reason, float(entry.failed_at), d.attempts + 1, d.first_attempt_at)

    def _matching(self, destination_id: str, status: str | None, since: float | None) -> list[tuple[float, int]]:
        return sorted(
            (dl.failed_at, seq)
            for seq, dl in self._dead.get(destination_id, {}).items()
            if (status is None or dl.status == status) and (since is None or dl.failed_at >= since)
        )

    async def dead_letters(
        self, destination_id: str, *, status: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        self._check()
        out: list[DeadLetterRecord] = []
        dead = self._dead.get(destination_id, {})
        for _, seq in self._matching(destination_id, status, since)[: max(limit, 0)]:
            dl, ev = dead[seq], self._events[seq]
            out.append(
                DeadLetterRecord(
                    str(seq),
                    ev.source_id,
                    ev.payload,
                    dl.status,
                    dl.reason,
                    dl.failed_at,
                    dl.attempts,
                    dl.first_attempt_at,
                    ev.appended_at,
                )
            )
        return out

    async def replay(self, destination_id: str, *, status: str | None = None, since: float | None = None) -> int:
        self._check()
        now = self._clock()
        matching = self._matching(destination_id, status, since)
        deliveries = self._deliveries.setdefault(destination_id, {})
        for _, seq in matching:
            del self._dead[destination_id][seq]
            deliveries[seq] = _Delivery(due_at=now, leased=False, attempts=0, first_attempt_at=None)
        return len(matching)

    def _destination_stats(self, destination_id: str) -> DestinationStats:
        cursors = self._cursors.get(destination_id, {})
        deliveries = self._deliveries.get(destination_id, {})
        leased = sum(1 for d in deliveries.values() if d.leased)
        return DestinationStats(
            new=sum(self._heads.get(s, 0) - c for s, c in cursors.items()),
            scheduled=len(deliveries) - leased,
            leased=leased,
            dead_letters=len(self._dead.get(destination_id, {})),
        )

    def _destinations(self) -> list[str]:
        return sorted(set(self._cursors) | set(self._deliveries) | set(self._dead))

    async def backlog(self, destination_id: str | None = None) -> int:
        self._check()
        ids = self._destinations() if destination_id is None else [destination_id]
        return sum(self._destination_stats(d).backlog for d in ids)

    async def stats(self) -> QueueStats:
        self._check()
        return QueueStats(
            events=len(self._events), destinations={d: self._destination_stats(d) for d in self._destinations()}
        )

    async def prune(self, now: float | None = None) -> PruneResult:
        self._check()
        now = self._clock() if now is None else now
        dl_cutoff = now - self.dead_letter_retention_s
        dead_removed = 0
        for dead in self._dead.values():
            for seq in [s for s, dl in dead.items() if dl.failed_at < dl_cutoff]:
                del dead[seq]
                dead_removed += 1
        held = {seq for ds in self._deliveries.values() for seq in ds} | {s for ds in self._dead.values() for s in ds}
        cutoff = now - self.acked_retention_s
        removed = 0
        for source_id, offsets in self._offsets.items():
            taken = [c[source_id] for c in self._cursors.values() if source_id in c]
            upper = min(taken) if taken else self._heads.get(source_id, 0)
            for off in [o for o in offsets if o <= upper]:
                seq = offsets[off]
                if seq not in held and self._events[seq].appended_at < cutoff:
                    del offsets[off]
                    del self._events[seq]
                    removed += 1
        return PruneResult(events_removed=removed, dead_letters_removed=dead_removed)

    async def close(self) -> None:
        self._closed = True
