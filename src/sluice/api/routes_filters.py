"""Destination filters (Segment's Public API shape: ``/destination/{id}/filters``, singular)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from sluice.api import schemas as s
from sluice.api.deps import ActorDep, CatalogDep

__all__ = ["router"]

router = APIRouter(responses=s.ERROR_RESPONSES, tags=["destination filters"])

FilterEnvelope = s.envelope("Filter", "filter", s.FilterOut)
FiltersEnvelope = s.envelope("Filters", "filters", list[s.FilterOut])


def _dump(body: s.Request) -> dict[str, Any]:
    return body.model_dump(mode="json", by_alias=True, exclude_unset=True)


@router.post("/destination/filters/preview", response_model=s.FilterPreviewEnvelope)
def preview_filter(body: s.FilterPreviewRequest, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    """Run an unsaved filter on one event: ``result`` is the event after it, or null when dropped."""
    return {"data": catalog.filters.preview(actor, _dump(body.filter), body.payload)}


@router.post("/destination/{destination_id}/filters", status_code=201, response_model=FilterEnvelope)
def create_filter(destination_id: str, body: s.FilterCreate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return {"data": {"filter": catalog.filters.create(actor, destination_id, _dump(body))}}


@router.get("/destination/{destination_id}/filters", response_model=FiltersEnvelope)
def list_filters(destination_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return {"data": {"filters": catalog.filters.list_all(actor, destination_id)}}


@router.get("/destination/{destination_id}/filters/{filter_id}", response_model=FilterEnvelope)
def get_filter(destination_id: str, filter_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return {"data": {"filter": catalog.filters.get(actor, destination_id, filter_id)}}


@router.patch("/destination/{destination_id}/filters/{filter_id}", response_model=FilterEnvelope)
def update_filter(
    destination_id: str, filter_id: str, body: s.FilterUpdate, actor: ActorDep, catalog: CatalogDep
) -> dict[str, Any]:
    return {"data": {"filter": catalog.filters.update(actor, destination_id, filter_id, _dump(body))}}


@router.delete("/destination/{destination_id}/filters/{filter_id}", status_code=204)
def delete_filter(destination_id: str, filter_id: str, actor: ActorDep, catalog: CatalogDep) -> Response:
    catalog.filters.delete(actor, destination_id, filter_id)
    return Response(status_code=204)
