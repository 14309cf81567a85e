"""Request dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from sluice.catalog.access import Actor
from sluice.catalog.service import Catalog


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_actor(
    request: Request, authorization: Annotated[str | None, Header(description="Bearer <token>")] = None
) -> Actor:
    catalog = get_catalog(request)
    return await run_in_threadpool(catalog.admin.authenticate, authorization)


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
ActorDep = Annotated[Actor, Depends(get_actor)]
