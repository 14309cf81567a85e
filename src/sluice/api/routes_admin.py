"""Sources, destinations, insert-function instances, tokens and the audit trail."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from sluice.api import schemas as s
from sluice.api.deps import ActorDep, CatalogDep
from sluice.errors import Unavailable
from sluice.ingest.stats import IngestStats

router = APIRouter(responses=s.ERROR_RESPONSES)


def _data(key: str, value: Any) -> dict[str, Any]:
    return {"data": {key: value}}


def _dump(body: s.Request) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude_unset=True)


# --- sources -------------------------------------------------------------------------------------
SourceEnvelope = s.envelope("Source", "source", s.SourceOut)
SourcesEnvelope = s.envelope("Sources", "sources", list[s.SourceOut])


@router.post("/sources", status_code=201, response_model=SourceEnvelope, tags=["sources"])
def create_source(body: s.SourceCreate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("source", catalog.sources.create(actor, _dump(body)))


@router.get("/sources", response_model=SourcesEnvelope, tags=["sources"])
def list_sources(actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("sources", catalog.sources.list_all(actor))


@router.get("/sources/{source_id}", response_model=SourceEnvelope, tags=["sources"])
def get_source(source_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("source", catalog.sources.get(actor, source_id))


@router.patch("/sources/{source_id}", response_model=SourceEnvelope, tags=["sources"])
def update_source(source_id: str, body: s.SourceUpdate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("source", catalog.sources.update(actor, source_id, _dump(body)))


@router.post("/sources/{source_id}/write-keys", status_code=201, response_model=SourceEnvelope, tags=["sources"])
def add_write_key(source_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("source", catalog.sources.add_write_key(actor, source_id))


@router.delete("/sources/{source_id}/write-keys/{key}", response_model=SourceEnvelope, tags=["sources"])
def remove_write_key(source_id: str, key: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("source", catalog.sources.remove_write_key(actor, source_id, key))


@router.delete("/sources/{source_id}", status_code=204, tags=["sources"])
def delete_source(source_id: str, actor: ActorDep, catalog: CatalogDep) -> Response:
    catalog.sources.delete(actor, source_id)
    return Response(status_code=204)


IngestEnvelope = s.envelope("IngestCounts", "ingest", s.IngestCountsOut)


@router.get("/sources/{source_id}/ingest", response_model=IngestEnvelope, tags=["sources"])
def get_ingest_counts(source_id: str, request: Request, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    """Events this server accepted, failed on ingest (by Segment's reason code) and dropped as
    duplicates for the source, since the server started."""
    catalog.sources.get(actor, source_id)  # permission and existence
    stats: IngestStats | None = request.app.state.ingest_stats
    if stats is None:
        raise Unavailable("this process serves no Tracking API")
    snapshot = stats.snapshot()
    return _data(
        "ingest",
        {
            "sourceId": source_id,
            "since": stats.started_at,
            "accepted": snapshot.accepted.get(source_id, 0),
            "failed": snapshot.failed.get(source_id, {}),
            "duplicates": snapshot.duplicates.get(source_id, 0),
        },
    )


# --- destinations --------------------------------------------------------------------------------
DestinationEnvelope = s.envelope("Destination", "destination", s.DestinationOut)
DestinationsEnvelope = s.envelope("Destinations", "destinations", list[s.DestinationOut])


@router.post("/destinations", status_code=201, response_model=DestinationEnvelope, tags=["destinations"])
def create_destination(body: s.DestinationCreate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("destination", catalog.destinations.create(actor, _dump(body)))


@router.get("/destinations", response_model=DestinationsEnvelope, tags=["destinations"])
def list_destinations(actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("destinations", catalog.destinations.list_all(actor))


@router.get("/destinations/{destination_id}", response_model=DestinationEnvelope, tags=["destinations"])
def get_destination(destination_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("destination", catalog.destinations.get(actor, destination_id))


@router.patch("/destinations/{destination_id}", response_model=DestinationEnvelope, tags=["destinations"])
def update_destination(
    destination_id: str, body: s.DestinationUpdate, actor: ActorDep, catalog: CatalogDep
) -> dict[str, Any]:
    return _data("destination", catalog.destinations.update(actor, destination_id, _dump(body)))


@router.delete("/destinations/{destination_id}", status_code=204, tags=["destinations"])
def delete_destination(destination_id: str, actor: ActorDep, catalog: CatalogDep) -> Response:
    catalog.destinations.delete(actor, destination_id)
    return Response(status_code=204)


# --- insert function instances -------------------------------------------------------------------
InstanceEnvelope = s.envelope("Instance", "instance", s.InstanceOut)
InstancesEnvelope = s.envelope("Instances", "instances", list[s.InstanceOut])
TAG: list[str | Enum] = ["insert function instances"]


@router.post("/insert-function-instances", status_code=201, response_model=InstanceEnvelope, tags=TAG)
def create_instance(body: s.InstanceCreate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("instance", catalog.instances.create(actor, _dump(body)))


@router.get("/insert-function-instances", response_model=InstancesEnvelope, tags=TAG)
def list_instances(
    actor: ActorDep,
    catalog: CatalogDep,
    functionId: str | None = None,
    integrationId: str | None = None,
) -> dict[str, Any]:
    found = catalog.instances.list_all(actor, function_id=functionId, destination_id=integrationId)
    return _data("instances", found)


@router.get("/insert-function-instances/{instance_id}", response_model=InstanceEnvelope, tags=TAG)
def get_instance(instance_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("instance", catalog.instances.get(actor, instance_id))


@router.patch("/insert-function-instances/{instance_id}", response_model=InstanceEnvelope, tags=TAG)
def update_instance(instance_id: str, body: s.InstanceUpdate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("instance", catalog.instances.update(actor, instance_id, _dump(body)))


@router.delete("/insert-function-instances/{instance_id}", status_code=204, tags=TAG)
def delete_instance(instance_id: str, actor: ActorDep, catalog: CatalogDep) -> Response:
    catalog.instances.delete(actor, instance_id)
    return Response(status_code=204)


# --- tokens and audit ----------------------------------------------------------------------------
TokenEnvelope = s.envelope("Token", "token", s.TokenOut)
TokensEnvelope = s.envelope("Tokens", "tokens", list[s.TokenOut])
AuditEnvelope = s.envelope("AuditEvents", "auditEvents", list[s.AuditEventOut])


MeEnvelope = s.envelope("Me", "me", s.MeOut)


@router.get("/me", response_model=MeEnvelope, tags=["tokens"])
def who_am_i(actor: ActorDep) -> dict[str, Any]:
    """The calling token's name and roles (what a client may offer its user to do)."""
    ids = sorted(actor.function_ids) if actor.function_ids is not None else None
    me = {
        "name": actor.name,
        "roles": sorted(str(r) for r in actor.roles),
        "functionIds": ids,
        "tokenId": actor.token_id,
    }
    return _data("me", me)


@router.post("/tokens", status_code=201, response_model=TokenEnvelope, tags=["tokens"])
def create_token(body: s.TokenCreate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("token", catalog.admin.create_token(actor, _dump(body)))


@router.get("/tokens", response_model=TokensEnvelope, tags=["tokens"])
def list_tokens(actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("tokens", catalog.admin.list_tokens(actor))


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def delete_token(token_id: str, actor: ActorDep, catalog: CatalogDep) -> Response:
    catalog.admin.delete_token(actor, token_id)
    return Response(status_code=204)


@router.get("/audit-events", response_model=AuditEnvelope, tags=["audit"])
def list_audit_events(
    actor: ActorDep,
    catalog: CatalogDep,
    resourceId: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    beforeId: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> dict[str, Any]:
    events = catalog.admin.audit_events(actor, resource_id=resourceId, limit=limit, before_id=beforeId)
    return _data("auditEvents", events)
