"""Delivery outcomes at rest: counters, latency histograms and samples (DESIGN §3.3).

The pipeline's :class:`~sluice.delivery.recorder.DeliveryRecorder` hands over a
:class:`~sluice.delivery.recorder.RecorderBatch` about once a second; :meth:`DeliveryStore.write`
merges it in one transaction — counts by addition (an upsert), histograms by adding bucket
counts (row locked, then merged), samples appended — so any number of processes may write.
:meth:`DeliveryStore.view` is what ``GET /api/destinations/{id}/delivery`` shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sluice.catalog import access, tables
from sluice.catalog.access import Actor
from sluice.catalog.core import Core, iso
from sluice.delivery import histogram
from sluice.delivery.outcomes import Outcome
from sluice.delivery.recorder import RecorderBatch, Sample, iso_at
from sluice.errors import InvalidInput, NotFound

__all__ = [
    "COUNTS_RETENTION_S",
    "DELIVERED",
    "FILTERED",
    "RETRYING",
    "SAMPLES_PER_DESTINATION",
    "SAMPLES_RETENTION_S",
    "WINDOWS",
    "DeliveryStore",
    "outcome_class",
]

DAY: Final = 86_400
COUNTS_RETENTION_S: Final = 8 * DAY
SAMPLES_RETENTION_S: Final = 7 * DAY
SAMPLES_PER_DESTINATION: Final = 1000

# window -> (length, series bucket) in seconds
WINDOWS: Final[dict[str, tuple[int, int]]] = {
    "10m": (600, 60),
    "1h": (3600, 60),
    "24h": (DAY, 900),
    "7d": (7 * DAY, 3600),
}

DELIVERED: Final = frozenset({Outcome.DELIVERED.value})
RETRYING: Final = frozenset({Outcome.RETRYING.value, Outcome.TIMEOUT.value})  # attempts that will be retried
FILTERED: Final = frozenset({Outcome.FILTERED.value, Outcome.DROPPED.value})
_OUTCOMES: Final = frozenset(o.value for o in Outcome)

# column widths (tables.py): longer values are cut rather than failing the whole write
_ID, _OUTCOME, _REASON_CODE, _MESSAGE_ID = 40, 40, 200, 200


def outcome_class(outcome: str) -> str:
    """``delivered``, ``retrying``, ``filtered`` or ``notDelivered`` (every other outcome)."""
    if outcome in DELIVERED:
        return "delivered"
    if outcome in RETRYING:
        return "retrying"
    if outcome in FILTERED:
        return "filtered"
    return "notDelivered"


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


class DeliveryStore:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _now(self, now: float | None) -> float:
        return self.core.clock().timestamp() if now is None else now

    def _insert(self, conn: Connection, table: Any) -> Any:
        if conn.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # --- writing ------------------------------------------------------------------------------------

    def write(self, batch: RecorderBatch) -> None:
        """Merge a recorder batch, in one transaction (a no-op for an empty batch)."""
        if batch.empty:
            return
        counts: dict[tuple[str, int, str, str], int] = {}
        for (dest, minute, outcome, code), n in batch.counts.items():
            key = (dest[:_ID], int(minute), str(outcome)[:_OUTCOME], code[:_REASON_CODE])
            counts[key] = counts.get(key, 0) + int(n)
        with self.core.tx() as conn:
            if counts:
                self._write_counts(conn, counts)
            for dest, minute in sorted(batch.latency):  # one order for every writer: no deadlocks
                self._merge_histogram(conn, dest, minute, batch.latency[(dest, minute)])
            if batch.samples:
                conn.execute(insert(tables.delivery_samples), [self._sample_row(s) for s in batch.samples])

    def _write_counts(self, conn: Connection, counts: dict[tuple[str, int, str, str], int]) -> None:
        t = tables.delivery_counts
        stmt = self._insert(conn, t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.destination_id, t.c.minute, t.c.outcome, t.c.reason_code],
            set_={"count": t.c.count + stmt.excluded["count"]},
        )
        rows = [
            {"destination_id": d, "minute": m, "outcome": o, "reason_code": r, "count": n}
            for (d, m, o, r), n in sorted(counts.items())
        ]
        conn.execute(stmt, rows)

    def _merge_histogram(self, conn: Connection, destination_id: str, minute: int, hist: Sequence[int]) -> None:
        t = tables.delivery_latency
        dest = destination_id[:_ID]
        conn.execute(
            self._insert(conn, t)
            .values(destination_id=dest, minute=int(minute), histogram=[])
            .on_conflict_do_nothing(index_elements=[t.c.destination_id, t.c.minute])
        )
        where = and_(t.c.destination_id == dest, t.c.minute == int(minute))
        query = select(t.c.histogram).where(where)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        stored = conn.execute(query).scalar_one()
        merged = histogram.merge_into(list(stored or []), hist)
        conn.execute(update(t).where(where).values(histogram=histogram.compact(merged)))

    @staticmethod
    def _sample_row(s: Sample) -> dict[str, Any]:
        return {
            "destination_id": str(s.destination_id)[:_ID],
            "at": _dt(s.at),
            "outcome": str(s.outcome)[:_OUTCOME],
            "reason_code": str(s.reason_code)[:_REASON_CODE],
            "reason": str(s.reason),
            "source_id": str(s.source_id)[:_ID],
            "message_id": str(s.message_id)[:_MESSAGE_ID] if s.message_id is not None else None,
            "attempts": int(s.attempts),
            "event": s.event,
            "error": s.error,
            "logs": list(s.logs),
            "requests": list(s.requests),
            "request": s.request,
            "response": s.response,
        }

    # --- reading ------------------------------------------------------------------------------------

    def require_destination(self, actor: Actor, destination_id: str, *, manage: bool = False) -> None:
        """The permission check of the delivery routes, then NotFound unless the destination exists."""
        decision = access.can_manage_connections(actor) if manage else access.can_read_connections(actor)
        self.core.require(decision)
        with self.core.tx() as conn:
            d = tables.destinations
            if conn.execute(select(d.c.id).where(d.c.id == destination_id)).first() is None:
                raise NotFound(f"no destination with id {destination_id!r}")

    def view(
        self,
        actor: Actor,
        destination_id: str,
        window: str,
        *,
        now: float | None = None,
        sample_limit: int = 50,
        outcome: str | None = None,
    ) -> dict[str, Any]:
        """Counts, latency percentiles, a per-bucket series and the newest samples of a window.

        The window ends with the series bucket holding ``now`` (1 min buckets for 10m/1h, 15 min
        for 24h, 1 h for 7d); ``from``/``to`` are its aligned bounds (``to`` exclusive).
        ``outcome`` restricts the samples (not the counts). Latencies are bucket upper bounds
        (see :mod:`sluice.delivery.histogram`): at most 25 % above the true percentile.
        """
        self.core.require(access.can_read_connections(actor))
        if window not in WINDOWS:
            raise InvalidInput(f"window must be one of {', '.join(WINDOWS)}", field="window")
        if outcome is not None and outcome not in _OUTCOMES:
            raise InvalidInput(f"unknown outcome {outcome!r}", field="outcome")
        length, step = WINDOWS[window]
        end = (int(self._now(now)) // step + 1) * step
        start = end - length
        with self.core.tx() as conn:
            d = tables.destinations
            if conn.execute(select(d.c.id).where(d.c.id == destination_id)).first() is None:
                raise NotFound(f"no destination with id {destination_id!r}")
            c = tables.delivery_counts
            in_window = and_(c.c.destination_id == destination_id, c.c.minute >= start, c.c.minute < end)
            bucket = c.c.minute - c.c.minute % step
            by_bucket = conn.execute(
                select(bucket.label("bucket"), c.c.outcome, func.sum(c.c.count))
                .where(in_window)
                .group_by(bucket, c.c.outcome)
            ).all()
            by_reason = conn.execute(
                select(c.c.outcome, c.c.reason_code, func.sum(c.c.count))
                .where(in_window)
                .group_by(c.c.outcome, c.c.reason_code)
            ).all()
            lt = tables.delivery_latency
            hists = conn.execute(
                select(lt.c.minute, lt.c.histogram).where(
                    lt.c.destination_id == destination_id, lt.c.minute >= start, lt.c.minute < end
                )
            ).all()
            samples = self._samples(conn, destination_id, start, end, outcome, sample_limit)

        totals = {"delivered": 0, "notDelivered": 0, "filtered": 0, "retrying": 0}
        series: dict[int, dict[str, Any]] = {
            at: {"at": iso_at(at), "delivered": 0, "notDelivered": 0, "p95Ms": None} for at in range(start, end, step)
        }
        for at, name, n in by_bucket:
            cls = outcome_class(name)
            totals[cls] += int(n)
            point = series.get(int(at))
            if point is not None and cls in ("delivered", "notDelivered"):
                point[cls] += int(n)
        overall: list[int] = []
        per_bucket: dict[int, list[int]] = {}
        for minute, hist in hists:
            histogram.merge_into(overall, hist or [])
            histogram.merge_into(per_bucket.setdefault(int(minute) - int(minute) % step, []), hist or [])
        for at, hist in per_bucket.items():
            if at in series:
                series[at]["p95Ms"] = histogram.percentile(hist, 0.95)
        outcomes = sorted(
            ({"outcome": o, "reasonCode": r, "count": int(n)} for o, r, n in by_reason),
            key=lambda item: (-item["count"], item["outcome"], item["reasonCode"]),
        )
        return {
            "destinationId": destination_id,
            "window": window,
            "from": iso_at(start),
            "to": iso_at(end),
            **totals,
            "outcomes": outcomes,
            "latency": {"p50Ms": histogram.percentile(overall, 0.5), "p95Ms": histogram.percentile(overall, 0.95)},
            "series": list(series.values()),
            "samples": samples,
        }

    def _samples(
        self, conn: Connection, destination_id: str, start: int, end: int, outcome: str | None, limit: int
    ) -> list[dict[str, Any]]:
        t = tables.delivery_samples
        query = select(t).where(t.c.destination_id == destination_id, t.c.at >= _dt(start), t.c.at < _dt(end))
        if outcome is not None:
            query = query.where(t.c.outcome == outcome)
        rows = conn.execute(query.order_by(t.c.at.desc(), t.c.id.desc()).limit(max(limit, 0))).mappings().all()
        return [
            {
                "id": row["id"],
                "destinationId": row["destination_id"],
                "at": iso(row["at"]),
                "outcome": row["outcome"],
                "reasonCode": row["reason_code"],
                "reason": row["reason"],
                "sourceId": row["source_id"],
                "messageId": row["message_id"],
                "attempts": row["attempts"],
                "event": row["event"],
                "error": row["error"],
                "logs": row["logs"],
                "requests": row["requests"],
                "request": row["request"],
                "response": row["response"],
            }
            for row in rows
        ]

    # --- replay audit and retention -----------------------------------------------------------------

    def audit_replay(
        self, actor: Actor, destination_id: str, replayed: int, status: str | None, since: float | None
    ) -> None:
        with self.core.tx() as conn:
            after = {"replayed": replayed, "status": status, "since": iso_at(since) if since is not None else None}
            self.core.audit(conn, actor, "destination.replay", "destination", destination_id, None, after)

    def prune(self, now: float | None = None) -> int:
        """Drop counts and latency older than 8 days, samples older than 7 days, and all but the
        newest 1,000 samples of each destination; returns how many rows were removed."""
        at = self._now(now)
        counts_cutoff = int(at) - COUNTS_RETENTION_S
        c, lt, t = tables.delivery_counts, tables.delivery_latency, tables.delivery_samples
        removed = 0
        with self.core.tx() as conn:
            removed += conn.execute(delete(c).where(c.c.minute < counts_cutoff)).rowcount
            removed += conn.execute(delete(lt).where(lt.c.minute < counts_cutoff)).rowcount
            removed += conn.execute(delete(t).where(t.c.at < _dt(at - SAMPLES_RETENTION_S))).rowcount
            crowded = conn.execute(
                select(t.c.destination_id).group_by(t.c.destination_id).having(func.count() > SAMPLES_PER_DESTINATION)
            ).scalars()
            for dest in list(crowded):
                edge = conn.execute(
                    select(t.c.at, t.c.id)
                    .where(t.c.destination_id == dest)
                    .order_by(t.c.at.desc(), t.c.id.desc())
                    .offset(SAMPLES_PER_DESTINATION)
                    .limit(1)
                ).one()
                older = or_(t.c.at < edge.at, and_(t.c.at == edge.at, t.c.id <= edge.id))
                removed += conn.execute(delete(t).where(t.c.destination_id == dest, older)).rowcount
        return removed
