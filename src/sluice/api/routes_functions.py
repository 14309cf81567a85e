"""``/functions``: functions, versions, deploy and preview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from sluice.api import schemas as s
from sluice.api.deps import ActorDep, CatalogDep

router = APIRouter(tags=["functions"], responses=s.ERROR_RESPONSES)

FunctionEnvelope = s.envelope("Function", "function", s.FunctionOut)
FunctionsEnvelope = s.envelope("Functions", "functions", list[s.FunctionOut])
VersionEnvelope = s.envelope("Version", "version", s.VersionOut)
VersionsEnvelope = s.envelope("Versions", "versions", list[s.VersionOut])
DeployEnvelope = s.envelope("Deploy", "deploy", s.DeployOut)
PreviewEnvelope = s.envelope("Preview", "preview", s.PreviewResult)


def _data(key: str, value: Any) -> dict[str, Any]:
    return {"data": {key: value}}


@router.post("/functions", status_code=201, response_model=FunctionEnvelope)
def create_function(body: s.FunctionCreate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("function", catalog.functions.create(actor, body.model_dump(mode="json", exclude_unset=True)))


@router.get("/functions", response_model=FunctionsEnvelope)
def list_functions(
    actor: ActorDep,
    catalog: CatalogDep,
    resourceType: str | None = None,
    displayName: str | None = None,
) -> dict[str, Any]:
    found = catalog.functions.list_all(actor, resource_type=resourceType, display_name=displayName)
    return _data("functions", found)


@router.post("/functions/preview", response_model=PreviewEnvelope)
async def preview_function(body: s.PreviewRequest, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    request = body.model_dump(mode="json", exclude_unset=True)
    return _data("preview", await catalog.functions.preview(actor, request))


@router.get("/functions/{function_id}", response_model=FunctionEnvelope)
def get_function(function_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("function", catalog.functions.get(actor, function_id))


@router.patch("/functions/{function_id}", response_model=FunctionEnvelope)
def update_function(function_id: str, body: s.FunctionUpdate, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    changes = body.model_dump(mode="json", exclude_unset=True)
    return _data("function", catalog.functions.update(actor, function_id, changes))


@router.delete("/functions/{function_id}", status_code=204)
def delete_function(function_id: str, actor: ActorDep, catalog: CatalogDep) -> Response:
    catalog.functions.delete(actor, function_id)
    return Response(status_code=204)


@router.get("/functions/{function_id}/versions", response_model=VersionsEnvelope)
def list_versions(function_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("versions", catalog.functions.versions(actor, function_id))


@router.get("/functions/{function_id}/versions/{version_id}", response_model=VersionEnvelope)
def get_version(function_id: str, version_id: str, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("version", catalog.functions.version(actor, function_id, version_id))


@router.post("/functions/{function_id}/versions", status_code=201, response_model=VersionEnvelope)
def restore_version(function_id: str, body: s.RestoreRequest, actor: ActorDep, catalog: CatalogDep) -> dict[str, Any]:
    return _data("version", catalog.functions.restore(actor, function_id, body.versionId))


@router.post("/functions/{function_id}/deploy", response_model=DeployEnvelope)
def deploy_function(
    function_id: str, actor: ActorDep, catalog: CatalogDep, body: s.DeployRequest | None = None
) -> dict[str, Any]:
    ids = body.instanceIds if body is not None else None
    return _data("deploy", catalog.functions.deploy(actor, function_id, ids))
