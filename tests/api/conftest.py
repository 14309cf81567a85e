"""The API under test: a real catalog (SQLite file or PostgreSQL) behind the real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.api.app import create_app
from sluice.catalog.service import Catalog
from sluice.config import Config

CODE = "def on_track(event, settings):\n    event['properties']['via'] = 'sluice'\n    return event\n"
SCHEMA = [
    {"name": "apiKey", "label": "API Key", "type": "STRING", "required": True, "sensitive": True},
    {"name": "region", "label": "Region", "type": "STRING"},
]
SECRET = "sk_live_0123456789abcdef"


@dataclass
class Api:
    client: httpx.AsyncClient
    catalog: Catalog
    token: str
    app: Any
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def as_token(self, token: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sluice/api", headers=headers
        )
        self.clients.append(client)
        return client

    async def with_roles(self, *roles: str, function_ids: list[str] | None = None) -> httpx.AsyncClient:
        body: dict[str, Any] = {"name": "-".join(roles) or "none", "roles": list(roles)}
        if function_ids is not None:
            body["functionIds"] = function_ids
        created = await self.client.post("/tokens", json=body)
        assert created.status_code == 201, created.text
        return self.as_token(created.json()["data"]["token"]["token"])

    async def function(self, **overrides: Any) -> dict[str, Any]:
        body = {"displayName": "Enrich", "code": CODE, "settings": SCHEMA, **overrides}
        response = await self.client.post("/functions", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["data"]["function"])

    async def destination(self, **overrides: Any) -> dict[str, Any]:
        body = {"name": "Webhook", "type": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}, **overrides}
        response = await self.client.post("/destinations", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["data"]["destination"])

    async def instance(self, function_id: str, destination_id: str, **overrides: Any) -> dict[str, Any]:
        body = {"functionId": function_id, "integrationId": destination_id, "settings": {"apiKey": SECRET}, **overrides}
        response = await self.client.post("/insert-function-instances", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json()["data"]["instance"])


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    data_dir = tmp_path / "data"
    catalog = Catalog.open(Config(data_dir=data_dir, database_url=database_url))
    token = catalog.admin.bootstrap_owner(data_dir, None)
    assert token is not None
    app = create_app(catalog)
    owner = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sluice/api",
        headers={"Authorization": f"Bearer {token}"},
    )
    state = Api(owner, catalog, token, app)
    try:
        yield state
    finally:
        for client in [owner, *state.clients]:
            await client.aclose()
        catalog.close()
