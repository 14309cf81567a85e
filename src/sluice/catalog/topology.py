"""The pipeline's view of the catalog: every destination with its sources, config (decrypted),
enabled destination filters (compiled) and insert function instance (deployed version,
decrypted settings), read in one transaction.

The pipeline polls this every few seconds (``Pipeline.refresh_s``) and compares snapshots, so a
deploy, an enabled flag or a settings change reaches delivery without a restart.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from sluice.catalog import tables
from sluice.catalog.core import Core
from sluice.catalog.filters import FiltersService
from sluice.functions.settings import parse_schema
from sluice.pipeline.plan import DestinationPlan, FunctionPlan

__all__ = ["load_plans"]


def load_plans(core: Core) -> list[DestinationPlan]:
    d, ds, inst, fv, fn = (
        tables.destinations,
        tables.destination_sources,
        tables.instances,
        tables.function_versions,
        tables.functions,
    )
    with core.tx() as conn:
        sources: dict[str, set[str]] = defaultdict(set)
        for link in conn.execute(select(ds.c.destination_id, ds.c.source_id)):
            sources[link.destination_id].add(link.source_id)
        functions: dict[str, FunctionPlan] = {}
        query = (
            select(
                inst.c.id,
                inst.c.destination_id,
                inst.c.function_id,
                inst.c.enabled,
                inst.c.settings,
                inst.c.version_id,
                fv.c.code,
                fv.c.settings.label("schema"),
                fv.c.language,
                fv.c.batch_max_count,
                fn.c.resource_type,
            )
            .join(fv, fv.c.id == inst.c.version_id)
            .join(fn, fn.c.id == inst.c.function_id)
        )
        for row in conn.execute(query).mappings():
            schema = parse_schema(row["schema"] or [])
            functions[row["destination_id"]] = FunctionPlan(
                instance_id=row["id"],
                function_id=row["function_id"],
                version_id=row["version_id"],
                enabled=bool(row["enabled"]),
                language=row["language"],
                code=row["code"],
                resource_type=row["resource_type"],
                batch_max_count=int(row["batch_max_count"]),
                schema=schema,
                settings=core.open_settings(schema, row["settings"]),
            )
        filters = FiltersService(core).for_pipeline(conn)
        plans = []
        for row in conn.execute(select(d).order_by(d.c.created_at, d.c.id)).mappings():
            plans.append(
                DestinationPlan(
                    id=row["id"],
                    name=row["name"],
                    type=row["type"],
                    enabled=bool(row["enabled"]),
                    source_ids=frozenset(sources.get(row["id"], ())),
                    config=core.open_config(row["type"], row["config"]),
                    function=functions.get(row["id"]),
                    filters=tuple(filters.get(row["id"], ())),
                )
            )
        return plans
