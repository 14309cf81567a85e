"""API tokens (stored hashed), authentication, the owner bootstrap, and the audit trail."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import RowMapping

from sluice.catalog import access, tables
from sluice.catalog.access import Actor, Role
from sluice.catalog.core import Core, iso
from sluice.errors import InvalidInput, NotFound, Unauthorized

TOKEN_PREFIX = "slc_"
MAX_AUDIT_PAGE = 500


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _roles(data: Mapping[str, Any]) -> list[Role]:
    raw = data.get("roles", [data["role"]] if "role" in data else None)
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"role is required: one of {', '.join(r.value for r in Role)}", field="role")
    roles: list[Role] = []
    for index, value in enumerate(raw):
        try:
            roles.append(Role(value))
        except ValueError:
            field = "role" if "roles" not in data else f"roles[{index}]"
            raise InvalidInput(
                f"unknown role {value!r}: one of {', '.join(r.value for r in Role)}", field=field
            ) from None
    return roles


class AdminService:
    def __init__(self, core: Core) -> None:
        self.core = core

    # --- tokens --------------------------------------------------------------------------------
    @staticmethod
    def _view(row: RowMapping) -> dict[str, Any]:
        roles = [r for r in str(row["role"]).split(",") if r]
        return {
            "id": row["id"],
            "name": row["name"],
            "role": roles[0] if roles else None,
            "roles": roles,
            "functionIds": row["function_ids"],
            "createdAt": iso(row["created_at"]),
            "lastUsedAt": iso(row["last_used_at"]),
        }

    def create_token(self, actor: Actor, data: Mapping[str, Any], *, token: str | None = None) -> dict[str, Any]:
        self.core.require(access.owner_only(actor, "manage API tokens"))
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidInput("name is required (at most 200 characters)", field="name")
        roles = _roles(data)
        function_ids = data.get("functionIds")
        if function_ids is not None:
            if not isinstance(function_ids, list) or not all(isinstance(f, str) for f in function_ids):
                raise InvalidInput("functionIds must be a list of function ids", field="functionIds")
            with self.core.tx() as conn:
                known = {
                    r.id
                    for r in conn.execute(select(tables.functions.c.id).where(tables.functions.c.id.in_(function_ids)))
                }
            for index, function_id in enumerate(function_ids):
                if function_id not in known:
                    raise InvalidInput(f"no function with id {function_id!r}", field=f"functionIds[{index}]")
        secret = token or new_token()
        token_id = self.core.ids("tok")
        with self.core.tx() as conn:
            conn.execute(
                insert(tables.tokens).values(
                    id=token_id, name=name, role=",".join(r.value for r in roles), function_ids=function_ids,
                    token_hash=hash_token(secret), created_at=self.core.clock(), last_used_at=None,
                )
            )  # fmt: skip
            view = self._view(
                conn.execute(select(tables.tokens).where(tables.tokens.c.id == token_id)).mappings().one()
            )
            self.core.audit(conn, actor, "token.create", "token", token_id, None, view)
        return {**view, "token": secret}

    def list_tokens(self, actor: Actor) -> list[dict[str, Any]]:
        self.core.require(access.owner_only(actor, "manage API tokens"))
        with self.core.tx() as conn:
            rows = conn.execute(
                select(tables.tokens).order_by(tables.tokens.c.created_at, tables.tokens.c.id)
            ).mappings()
            return [self._view(r) for r in rows.all()]

    def get_token(self, actor: Actor, token_id: str) -> dict[str, Any]:
        self.core.require(access.owner_only(actor, "manage API tokens"))
        with self.core.tx() as conn:
            row = conn.execute(select(tables.tokens).where(tables.tokens.c.id == token_id)).mappings().first()
        if row is None:
            raise NotFound(f"no token with id {token_id!r}")
        return self._view(row)

    def delete_token(self, actor: Actor, token_id: str) -> None:
        before = self.get_token(actor, token_id)
        with self.core.tx() as conn:
            conn.execute(delete(tables.tokens).where(tables.tokens.c.id == token_id))
            self.core.audit(conn, actor, "token.delete", "token", token_id, before, None)

    # --- authentication ------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Actor:
        """The actor behind an ``Authorization: Bearer <token>`` header, or Unauthorized."""
        if not authorization:
            raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        digest = hash_token(token.strip())
        with self.core.tx() as conn:
            row = conn.execute(select(tables.tokens).where(tables.tokens.c.token_hash == digest)).mappings().first()
            if row is None or not hmac.compare_digest(row["token_hash"], digest):
                raise Unauthorized("unknown or revoked API token")
            conn.execute(
                update(tables.tokens).where(tables.tokens.c.id == row["id"]).values(last_used_at=self.core.clock())
            )
        roles = frozenset(Role(r) for r in str(row["role"]).split(",") if r)
        ids = frozenset(row["function_ids"]) if row["function_ids"] is not None else None
        return Actor(row["name"], roles, ids, row["id"])

    def bootstrap_owner(self, data_dir: Path, env_token: str | None) -> str | None:
        """Make sure an owner token exists. Returns a newly generated token to print once, else None.

        ``SLUICE_ADMIN_TOKEN`` (``env_token``) becomes the owner token when set; otherwise, on the
        first start, one is generated and written to ``<data dir>/admin-token`` (mode 0600).
        """
        with self.core.tx() as conn:
            if env_token:
                found = conn.execute(
                    select(tables.tokens.c.id).where(tables.tokens.c.token_hash == hash_token(env_token))
                ).first()
                if found:
                    return None
            elif conn.execute(select(func.count()).select_from(tables.tokens)).scalar_one():
                return None
        token = env_token or new_token()
        self.create_token(access.SYSTEM, {"name": "admin", "role": Role.WORKSPACE_OWNER.value}, token=token)
        if env_token:
            return None
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "admin-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        os.chmod(path, 0o600)
        return token

    # --- audit trail ---------------------------------------------------------------------------
    def audit_events(
        self, actor: Actor, *, resource_id: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        self.core.require(access.owner_only(actor, "read the audit trail"))
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidInput(f"limit must be from 1 to {MAX_AUDIT_PAGE}", field="limit")
        ae = tables.audit_events
        query = select(ae).order_by(ae.c.id.desc()).limit(limit)
        if resource_id:
            query = query.where(ae.c.resource_id == resource_id)
        if before_id is not None:
            query = query.where(ae.c.id < before_id)
        with self.core.tx() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            {
                "id": r["id"],
                "timestamp": iso(r["at"]),
                "actor": r["actor"],
                "action": r["action"],
                "resourceType": r["resource_type"],
                "resourceId": r["resource_id"],
                "before": r["before"],
                "after": r["after"],
            }
            for r in rows
        ]
