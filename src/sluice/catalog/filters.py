"""Destination filters (use-cases): at most :data:`MAX_PER_DESTINATION` per destination, validated
and compiled by :mod:`sluice.filters`, every change audited.

Reading needs any role (``access.can_read_connections``); writing needs Source Admin or the
owner (``access.can_manage_connections``), as for destinations.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.engine import RowMapping

from sluice.catalog import access, tables
from sluice.catalog.access import Actor
from sluice.catalog.core import Core, iso
from sluice.errors import ApiError, Conflict, InvalidInput, NotFound
from sluice.filters import DestinationFilter, Dropped, apply_filters, parse_filter

__all__ = ["MAX_PER_DESTINATION", "FiltersService"]

log = logging.getLogger("sluice.catalog.filters")

#: Segment's limit of filters per destination.
MAX_PER_DESTINATION: Final = 10

#: The fields a filter document may carry (create and PATCH).
FIELDS: Final = ("sourceId", "if", "actions", "title", "description", "enabled")


def _document(row: RowMapping) -> dict[str, Any]:
    return {
        "sourceId": row["source_id"],
        "if": row["if_"],
        "actions": row["actions"],
        "title": row["title"],
        "description": row["description"],
        "enabled": bool(row["enabled"]),
    }


def view(row: RowMapping) -> dict[str, Any]:
    """A stored filter as the API shows it."""
    return {
        "id": row["id"],
        "destinationId": row["destination_id"],
        **_document(row),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _compile(row: RowMapping) -> DestinationFilter:
    return parse_filter(_document(row), id=row["id"], destination_id=row["destination_id"])


class FiltersService:
    def __init__(self, core: Core) -> None:
        self.core = core

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _destination(conn: Connection, destination_id: str, *, lock: bool = False) -> None:
        query = select(tables.destinations.c.id).where(tables.destinations.c.id == destination_id)
        if lock:  # PostgreSQL: serialise creations on one destination (the limit); SQLite has one writer
            query = query.with_for_update()
        if conn.execute(query).first() is None:
            raise NotFound(f"no destination with id {destination_id!r}")

    @staticmethod
    def _row(conn: Connection, destination_id: str, filter_id: str) -> RowMapping:
        df = tables.destination_filters
        row = (
            conn.execute(select(df).where(df.c.id == filter_id, df.c.destination_id == destination_id))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"destination {destination_id} has no filter with id {filter_id!r}")
        return row

    @staticmethod
    def _check_source(conn: Connection, source_id: str | None) -> None:
        if source_id is None:
            return
        found = conn.execute(select(tables.sources.c.id).where(tables.sources.c.id == source_id)).first()
        if found is None:
            raise InvalidInput(f"no source with id {source_id!r}", field="sourceId")

    @staticmethod
    def _values(flt: DestinationFilter) -> dict[str, Any]:
        return {
            "source_id": flt.source_id,
            "if_": flt.if_,
            "actions": [a.to_document() for a in flt.actions],
            "title": flt.title,
            "description": flt.description,
            "enabled": flt.enabled,
        }

    @staticmethod
    def _unknown(data: Mapping[str, Any]) -> None:
        for key in data:
            if key not in FIELDS:
                raise InvalidInput("unknown field", field=str(key))

    # --- use-cases -----------------------------------------------------------------------------

    def list_all(self, actor: Actor, destination_id: str) -> list[dict[str, Any]]:
        self.core.require(access.can_read_connections(actor))
        df = tables.destination_filters
        with self.core.tx() as conn:
            self._destination(conn, destination_id)
            rows = conn.execute(
                select(df).where(df.c.destination_id == destination_id).order_by(df.c.position, df.c.id)
            ).mappings()
            return [view(r) for r in rows]

    def get(self, actor: Actor, destination_id: str, filter_id: str) -> dict[str, Any]:
        self.core.require(access.can_read_connections(actor))
        with self.core.tx() as conn:
            self._destination(conn, destination_id)
            return view(self._row(conn, destination_id, filter_id))

    def create(self, actor: Actor, destination_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_manage_connections(actor))
        self._unknown(data)
        df = tables.destination_filters
        with self.core.tx() as conn:
            self._destination(conn, destination_id, lock=True)
            flt = parse_filter(data)
            self._check_source(conn, flt.source_id)
            count, last = conn.execute(
                select(func.count(), func.max(df.c.position)).where(df.c.destination_id == destination_id)
            ).one()
            if count >= MAX_PER_DESTINATION:
                raise Conflict(
                    f"destination {destination_id} already has {count} filters, "
                    f"the most a destination may have ({MAX_PER_DESTINATION}); delete one first"
                )
            now = self.core.clock()
            filter_id = self.core.ids("df")
            conn.execute(
                insert(df).values(
                    id=filter_id, destination_id=destination_id, position=(last or 0) + 1,
                    created_at=now, updated_at=now, **self._values(flt),
                )
            )  # fmt: skip
            after = view(self._row(conn, destination_id, filter_id))
            self.core.audit(conn, actor, "filter.create", "destination_filter", filter_id, None, after)
            return after

    def update(self, actor: Actor, destination_id: str, filter_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """A PATCH: the fields sent replace the stored ones (``sourceId: null`` = every source)."""
        self.core.require(access.can_manage_connections(actor))
        self._unknown(data)
        df = tables.destination_filters
        with self.core.tx() as conn:
            self._destination(conn, destination_id)
            row = self._row(conn, destination_id, filter_id)
            before = view(row)
            merged = {**_document(row), **data}
            if "if" in data and data["if"] is None:
                raise InvalidInput("if (an FQL condition, e.g. 'all') is required", field="if")
            if "actions" in data and data["actions"] is None:
                raise InvalidInput('actions must be a non-empty list, e.g. [{"type": "DROP"}]', field="actions")
            if "enabled" in data and data["enabled"] is None:
                merged["enabled"] = row["enabled"]
            flt = parse_filter(merged)
            if "sourceId" in data:
                self._check_source(conn, flt.source_id)
            conn.execute(
                update(df).where(df.c.id == filter_id).values(updated_at=self.core.clock(), **self._values(flt))
            )
            after = view(self._row(conn, destination_id, filter_id))
            self.core.audit(conn, actor, "filter.update", "destination_filter", filter_id, before, after)
            return after

    def delete(self, actor: Actor, destination_id: str, filter_id: str) -> None:
        self.core.require(access.can_manage_connections(actor))
        df = tables.destination_filters
        with self.core.tx() as conn:
            self._destination(conn, destination_id)
            before = view(self._row(conn, destination_id, filter_id))
            conn.execute(delete(df).where(df.c.id == filter_id))
            self.core.audit(conn, actor, "filter.delete", "destination_filter", filter_id, before, None)

    def preview(self, actor: Actor, data: Mapping[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        """What an unsaved filter (``if`` and ``actions``) does to ``payload``: ``{"inputPayload",
        "result"}`` (``result`` null when dropped) plus sluice's ``reason`` for a drop.

        SAMPLE with a path decides as in production (by the value's hash); without a path it draws
        from a generator seeded by the payload's ``messageId`` (else the payload itself), so the same
        request always answers the same. No database access.
        """
        self.core.require(access.can_read_connections(actor))
        self._unknown(data)
        flt = parse_filter({"if": data.get("if"), "actions": data.get("actions")})
        seed = payload.get("messageId")
        if not isinstance(seed, str):
            seed = json.dumps(payload, sort_keys=True, default=str)
        outcome = apply_filters([flt], "", payload, rng=random.Random(seed))
        if isinstance(outcome, Dropped):
            return {"inputPayload": payload, "result": None, "reason": outcome.reason}
        return {"inputPayload": payload, "result": outcome.event, "reason": None}

    # --- for the pipeline ----------------------------------------------------------------------

    def for_pipeline(
        self, conn: Connection | None = None, *, include_disabled: bool = False
    ) -> dict[str, list[DestinationFilter]]:
        """Every destination's filters, compiled, in order (destinations without filters are absent).

        Disabled filters are left out unless ``include_disabled``. A stored filter that no longer
        compiles (a later release refusing old FQL) is logged and left out, never fatal.
        """
        if conn is None:
            with self.core.tx() as own:
                return self.for_pipeline(own, include_disabled=include_disabled)
        df = tables.destination_filters
        query = select(df).order_by(df.c.destination_id, df.c.position, df.c.id)
        if not include_disabled:
            query = query.where(df.c.enabled.is_(True))
        out: dict[str, list[DestinationFilter]] = {}
        for row in conn.execute(query).mappings():
            try:
                flt = _compile(row)
            except ApiError as exc:
                log.error("destination filter %s of %s is ignored: %s", row["id"], row["destination_id"], exc.message)
                continue
            out.setdefault(row["destination_id"], []).append(flt)
        return out
