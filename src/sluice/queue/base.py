"""The event log's domain types and the :class:`EventLog` Protocol (DESIGN §2, §5).

The log stores encoded events (JSON bytes) per **source** and lets every **destination**
consume the sources it is subscribed to independently: each destination has its own position
in each source's log and its own in-flight, retrying and dead-lettered entries, so a slow or
failing destination never holds back another.

Semantics every backend implements (the contract suite in ``tests/queue`` checks them):

- ``append`` returns only when the events are durable (committed). Concurrent appends may be
  group-committed. Within one source, events are delivered to a fresh destination in append order;
  across retries and lease expiry order is not guaranteed (delivery is at-least-once).
- ``subscribe`` takes effect *from now on*: events appended before a destination subscribed to a
  source are never delivered to it. Dropping a source from the list stops delivery of its events
  not yet leased; entries already leased, retrying or dead-lettered stay where they are.
- ``lease`` returns entries that are due — first those whose time has come (retries, expired
  leases, replays; oldest due first), then new events — and marks them leased for ``lease_s``.
  An entry not acked, retried or dead-lettered within ``lease_s`` becomes due again.
- ``Leased.attempts`` counts finished failed attempts (``retry_at`` and ``dead_letter`` add one,
  lease expiry does not). ``first_attempt_at`` is when the entry was first leased, ``None`` when
  this lease *is* the first attempt (then the first attempt is "now"); replay resets both.
- ``ack``/``retry_at``/``dead_letter`` on an entry id the destination does not hold (already acked,
  unknown) are ignored: at-least-once consumers may ack twice.
- Retention (``prune``): an event is removed once every destination subscribed to its source has
  acked or dead-lettered it **and** it was appended more than ``acked_retention_s`` ago (the
  window counts from the append, as JetStream's ``MaxAge`` does; it also bounds how long an
  acked event can still be inspected). Dead letters are removed ``dead_letter_retention_s``
  after they failed; the event payload is kept while a dead letter refers to it.
- Times come from the injected clock; ``appended_at`` never goes backwards.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sluice.errors import SluiceError

DEFAULT_ACKED_RETENTION_S = 24 * 3600.0
DEFAULT_DEAD_LETTER_RETENTION_S = 7 * 24 * 3600.0


class QueueError(SluiceError):
    """The event log failed (storage error, closed log, bad argument)."""


@dataclass(frozen=True, slots=True)
class Leased:
    """One event handed to a destination until it acks, retries or dead-letters it."""

    entry_id: str
    source_id: str
    payload: bytes
    attempts: int
    first_attempt_at: float | None
    appended_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A request to move a leased entry to the dead-letter store."""

    entry_id: str
    status: str  # an outcome, e.g. "expired", "rejected_by_destination"
    reason: str
    failed_at: float


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What the dead-letter store holds for one entry (listing, replay)."""

    entry_id: str
    source_id: str
    payload: bytes
    status: str
    reason: str
    failed_at: float
    attempts: int
    first_attempt_at: float | None
    appended_at: float


@dataclass(frozen=True, slots=True)
class DestinationStats:
    new: int  # subscribed events not leased yet
    scheduled: int  # waiting for their retry time (or due now after a retry/replay)
    leased: int  # leased, not acked yet (including expired leases)
    dead_letters: int

    @property
    def backlog(self) -> int:
        return self.new + self.scheduled + self.leased


@dataclass(frozen=True, slots=True)
class QueueStats:
    events: int  # events held in the log (all sources)
    destinations: dict[str, DestinationStats] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        return sum(d.backlog for d in self.destinations.values())


@dataclass(frozen=True, slots=True)
class PruneResult:
    events_removed: int
    dead_letters_removed: int


@runtime_checkable
class EventLog(Protocol):
    """Durable per-source event log with independent per-destination consumption."""

    async def append(self, source_id: str, events: Sequence[bytes]) -> int:
        """Durably append encoded events; returns the number appended once committed."""
        ...

    async def subscribe(self, destination_id: str, source_ids: Collection[str]) -> None:
        """Set the sources a destination consumes from now on (idempotent)."""
        ...

    async def lease(self, destination_id: str, max_events: int, lease_s: float) -> list[Leased]:
        """Up to ``max_events`` due entries, leased for ``lease_s`` seconds."""
        ...

    async def ack(self, destination_id: str, entry_ids: Collection[str]) -> None:
        """The entries are done (delivered, filtered, dropped …): forget them."""
        ...

    async def retry_at(self, destination_id: str, entry_ids_with_times: Mapping[str, float]) -> None:
        """Attempts += 1; each entry becomes due again at its given time."""
        ...

    async def dead_letter(self, destination_id: str, entries: Sequence[DeadLetter]) -> None:
        """Attempts += 1; move the entries to the dead-letter store."""
        ...

    async def dead_letters(
        self, destination_id: str, *, status: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[DeadLetterRecord]:
        """Dead letters of a destination, oldest failure first (``since``: failed_at >= since)."""
        ...

    async def replay(self, destination_id: str, *, status: str | None = None, since: float | None = None) -> int:
        """Move matching dead letters back to due now (attempts reset); returns how many."""
        ...

    async def backlog(self, destination_id: str | None = None) -> int:
        """Entries not yet acked or dead-lettered (new + scheduled + leased); None = all destinations."""
        ...

    async def stats(self) -> QueueStats: ...

    async def prune(self, now: float | None = None) -> PruneResult:
        """Apply the retention windows (``now`` defaults to the log's clock)."""
        ...

    async def close(self) -> None: ...


def parse_entry_id(entry_id: str) -> int | None:
    """Entry ids of the embedded backends are the decimal log sequence number."""
    try:
        value = int(entry_id)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
