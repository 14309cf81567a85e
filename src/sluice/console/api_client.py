"""The console's only way to the data: the public API, called in-process with the user's token."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import ASGIApp

BASE_URL = "http://console/api"
TIMEOUT_S = 120.0  # a preview may run a function for a while


class ApiProblem(Exception):
    """An error answer of the API: its status and ``errors`` ([{type, message, field?, line?}])."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        self.status = status
        self.errors = errors or [{"type": "error", "message": f"the API answered {status}"}]
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return "; ".join(str(e.get("message", "")) for e in self.errors)

    @property
    def line(self) -> int | None:
        for error in self.errors:
            if isinstance(error.get("line"), int):
                return int(error["line"])
        return None

    def field_errors(self) -> dict[str, str]:
        return {str(e["field"]): str(e.get("message", "")) for e in self.errors if e.get("field")}


class ConsoleApi:
    """``GET/POST/PATCH/DELETE`` on ``/api`` as the signed-in token; returns the envelope's ``data``."""

    def __init__(self, api_app: ASGIApp, token: str) -> None:
        self._app = api_app
        self._token = token

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> dict[str, Any]:
        return await self._call("POST", path, json=json)

    async def patch(self, path: str, json: Any) -> dict[str, Any]:
        return await self._call("PATCH", path, json=json)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self._call("DELETE", path)

    async def _call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> dict[str, Any]:
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        transport = httpx.ASGITransport(app=self._app)
        headers = {"Authorization": f"Bearer {self._token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=headers, timeout=TIMEOUT_S
        ) as client:
            response = await client.request(method, path, params=params, json=json)
        if response.status_code == 204:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            if not isinstance(errors, list):
                errors = [{"type": "error", "message": f"the API answered {response.status_code}"}]
            raise ApiProblem(response.status_code, [e for e in errors if isinstance(e, dict)])
        data = body.get("data") if isinstance(body, dict) else None
        return data if isinstance(data, dict) else {}
