"""Functions, their immutable versions, deploy and preview (use-cases).

Saving code or settings creates a new version (the ``LATEST``) and changes no running
instance; deploying moves instances to the latest version (they are then ``DEPLOYED``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.engine import RowMapping

from sluice.catalog import access, tables
from sluice.catalog.access import Actor
from sluice.catalog.core import Core, iso
from sluice.errors import Conflict, FunctionLoadError, InvalidInput, NotFound, RateLimited, SettingsSchemaError
from sluice.functions.loader import check_source
from sluice.functions.manifest import LANGUAGES, MAX_BATCH_COUNT, MAX_DISPLAY_NAME, RESOURCE_TYPES
from sluice.functions.run import FunctionRun, arun_function
from sluice.functions.settings import SettingSpec, parse_schema

PreviewRunner = Callable[..., Awaitable[FunctionRun]]
VERSIONED_FIELDS = ("code", "settings", "language", "batchMaxCount")
MAX_CODE_BYTES = 512 * 1024
MAX_PREVIEW_EVENTS = 400


def _schema(stored: object) -> tuple[SettingSpec, ...]:
    return parse_schema(stored) if stored else ()


def validate_function_fields(
    data: Mapping[str, Any], *, partial: bool, current_language: str = "python"
) -> dict[str, Any]:
    """Business rules of a function's fields; returns them normalized. Raises InvalidInput.

    ``code`` is checked in the language given with it, else the function's ``current_language``."""
    out: dict[str, Any] = {}
    if "displayName" in data or not partial:
        name = data.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("displayName is required", field="displayName")
        if len(name) > MAX_DISPLAY_NAME:
            raise InvalidInput(
                f"displayName is {len(name)} characters, over the limit of {MAX_DISPLAY_NAME}", field="displayName"
            )
        out["displayName"] = name
    for key in ("description",):
        if key in data:
            if not isinstance(data[key], str):
                raise InvalidInput(f"{key} must be a string", field=key)
            out[key] = data[key]
    if "logoUrl" in data:
        logo = data["logoUrl"]
        if logo is not None and (not isinstance(logo, str) or not logo.startswith(("https://", "http://"))):
            raise InvalidInput("logoUrl must be an http(s) URL or null", field="logoUrl")
        out["logoUrl"] = logo
    if "language" in data or not partial:
        language = data.get("language", "python")
        if language not in LANGUAGES:
            raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}", field="language")
        out["language"] = language
    if "resourceType" in data or not partial:
        resource_type = data.get("resourceType", "INSERT_DESTINATION")
        if resource_type not in RESOURCE_TYPES:
            raise InvalidInput(f"resourceType must be one of {', '.join(RESOURCE_TYPES)}", field="resourceType")
        out["resourceType"] = resource_type
    if "batchMaxCount" in data or not partial:
        count = data.get("batchMaxCount", 20)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_BATCH_COUNT:
            raise InvalidInput(
                f"batchMaxCount must be a whole number from 1 to {MAX_BATCH_COUNT}", field="batchMaxCount"
            )
        out["batchMaxCount"] = count
    if "settings" in data or not partial:
        try:
            specs = parse_schema(data.get("settings") or [])
        except SettingsSchemaError as exc:
            raise InvalidInput(str(exc), field="settings") from None
        out["settings"] = [s.to_dict() for s in specs]
    if "code" in data or not partial:
        out["code"] = validate_code(data.get("code"), language=out.get("language", current_language))
    return out


def validate_code(code: object, field: str = "code", *, language: str = "python") -> str:
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput("code is required", field=field)
    if len(code.encode("utf-8")) > MAX_CODE_BYTES:
        raise InvalidInput(f"code is over {MAX_CODE_BYTES // 1024} KB", field=field)
    try:
        check_source(code, "function.js" if language == "javascript" else "function.py")
    except FunctionLoadError as exc:
        raise InvalidInput(str(exc), field=field, line=exc.line) from None
    return code


class FunctionsService:
    def __init__(self, core: Core, *, preview_runner: PreviewRunner = arun_function, max_previews: int = 4) -> None:
        self.core = core
        self.preview_runner = preview_runner
        self.max_previews = max_previews
        self._previews: dict[str, int] = {}

    # --- reading ---------------------------------------------------------------------------------
    def _row(self, conn: Connection, function_id: str) -> RowMapping:
        row = conn.execute(select(tables.functions).where(tables.functions.c.id == function_id)).mappings().first()
        if row is None:
            raise NotFound(f"no function with id {function_id!r}")
        return row

    def _latest_version_id(self, conn: Connection, function_id: str, number: int) -> str:
        fv = tables.function_versions
        found = conn.execute(select(fv.c.id).where(fv.c.function_id == function_id, fv.c.number == number)).scalar()
        assert found is not None
        return str(found)

    def view(self, conn: Connection, row: RowMapping) -> dict[str, Any]:
        inst = tables.instances
        latest_id = self._latest_version_id(conn, row["id"], row["latest_version"])
        deployed = conn.execute(
            select(inst.c.version_id, inst.c.deployed_at).where(inst.c.function_id == row["id"])
        ).all()
        return {
            "id": row["id"],
            "displayName": row["display_name"],
            "description": row["description"],
            "logoUrl": row["logo_url"],
            "code": row["code"],
            "language": row["language"],
            "resourceType": row["resource_type"],
            "settings": row["settings"],
            "batchMaxCount": row["batch_max_count"],
            "createdAt": iso(row["created_at"]),
            "createdBy": row["created_by"],
            "updatedAt": iso(row["updated_at"]),
            "deployedAt": iso(max((d.deployed_at for d in deployed), default=None)),
            "isLatestVersion": all(d.version_id == latest_id for d in deployed),
            "version": row["latest_version"],
            "versionId": latest_id,
            "instancesCount": len(deployed),
        }

    def list_all(
        self, actor: Actor, *, resource_type: str | None = None, display_name: str | None = None
    ) -> list[dict[str, Any]]:
        self.core.require(access.can_list_functions(actor))
        query = select(tables.functions).order_by(tables.functions.c.created_at, tables.functions.c.id)
        if resource_type:
            query = query.where(tables.functions.c.resource_type == resource_type)
        if display_name is not None:
            query = query.where(tables.functions.c.display_name == display_name)
        with self.core.tx() as conn:
            rows = conn.execute(query).mappings().all()
            return [self.view(conn, r) for r in rows if access.visible_function(actor, r["id"])]

    def get(self, actor: Actor, function_id: str) -> dict[str, Any]:
        self.core.require(access.can_read_function(actor, function_id))
        with self.core.tx() as conn:
            return self.view(conn, self._row(conn, function_id))

    # --- writing ---------------------------------------------------------------------------------
    def _add_version(
        self,
        conn: Connection,
        actor: Actor,
        function_id: str,
        number: int,
        fields: Mapping[str, Any],
        restored_from: str | None = None,
    ) -> str:
        version_id = self.core.ids("ver")
        conn.execute(
            insert(tables.function_versions).values(
                id=version_id,
                function_id=function_id,
                number=number,
                code=fields["code"],
                settings=fields["settings"],
                language=fields["language"],
                batch_max_count=fields["batchMaxCount"],
                author=actor.name,
                created_at=self.core.clock(),
                restored_from=restored_from,
            )
        )
        return version_id

    def create(self, actor: Actor, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_create_function(actor))
        fields = validate_function_fields(data, partial=False)
        fields.setdefault("description", "")
        fields.setdefault("logoUrl", None)
        now = self.core.clock()
        function_id = self.core.ids("fn")
        with self.core.tx() as conn:
            conn.execute(
                insert(tables.functions).values(
                    id=function_id,
                    display_name=fields["displayName"],
                    description=fields["description"],
                    logo_url=fields["logoUrl"],
                    language=fields["language"],
                    resource_type=fields["resourceType"],
                    settings=fields["settings"],
                    batch_max_count=fields["batchMaxCount"],
                    code=fields["code"],
                    latest_version=1,
                    created_by=actor.name,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._add_version(conn, actor, function_id, 1, fields)
            view = self.view(conn, self._row(conn, function_id))
            self.core.audit(conn, actor, "function.create", "function", function_id, None, view)
            return view

    def update(self, actor: Actor, function_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_edit_function(actor, function_id))
        with self.core.tx() as conn:
            stored_language = str(self._row(conn, function_id)["language"])
        fields = validate_function_fields(data, partial=True, current_language=stored_language)
        if fields.get("language", stored_language) != stored_language and "code" not in fields:
            with self.core.tx() as conn:  # the stored code must be valid in the new language
                validate_code(self._row(conn, function_id)["code"], language=fields["language"])
        with self.core.tx() as conn:
            row = self._row(conn, function_id)
            before = self.view(conn, row)
            current = {
                "code": row["code"],
                "settings": row["settings"],
                "language": row["language"],
                "batchMaxCount": row["batch_max_count"],
            }
            merged = {**current, **{k: v for k, v in fields.items() if k in VERSIONED_FIELDS}}
            values: dict[str, Any] = {"updated_at": self.core.clock()}
            if merged != current:
                values["latest_version"] = row["latest_version"] + 1
                self._add_version(conn, actor, function_id, values["latest_version"], merged)
            column = {
                "displayName": "display_name",
                "description": "description",
                "logoUrl": "logo_url",
                "code": "code",
                "settings": "settings",
                "language": "language",
                "resourceType": "resource_type",
                "batchMaxCount": "batch_max_count",
            }
            values.update({column[k]: v for k, v in fields.items()})
            conn.execute(update(tables.functions).where(tables.functions.c.id == function_id).values(**values))
            after = self.view(conn, self._row(conn, function_id))
            self.core.audit(conn, actor, "function.update", "function", function_id, before, after)
            return after

    def delete(self, actor: Actor, function_id: str) -> None:
        self.core.require(access.can_edit_function(actor, function_id))
        with self.core.tx() as conn:
            before = self.view(conn, self._row(conn, function_id))
            count = conn.execute(
                select(func.count()).select_from(tables.instances).where(tables.instances.c.function_id == function_id)
            ).scalar_one()
            if count:
                raise Conflict(
                    f"function {function_id} is connected to {count} destination(s); remove its instances first"
                )
            conn.execute(delete(tables.function_versions).where(tables.function_versions.c.function_id == function_id))
            conn.execute(delete(tables.functions).where(tables.functions.c.id == function_id))
            self.core.audit(conn, actor, "function.delete", "function", function_id, before, None)

    # --- versions --------------------------------------------------------------------------------
    def _version_view(self, conn: Connection, row: RowMapping, latest: int) -> dict[str, Any]:
        deployed = conn.execute(
            select(func.count()).select_from(tables.instances).where(tables.instances.c.version_id == row["id"])
        ).scalar_one()
        labels = (["LATEST"] if row["number"] == latest else []) + (["DEPLOYED"] if deployed else [])
        return {
            "id": row["id"],
            "functionId": row["function_id"],
            "version": row["number"],
            "code": row["code"],
            "settings": row["settings"],
            "language": row["language"],
            "batchMaxCount": row["batch_max_count"],
            "author": row["author"],
            "createdAt": iso(row["created_at"]),
            "restoredFrom": row["restored_from"],
            "labels": labels,
            "isLatestVersion": row["number"] == latest,
            "instancesCount": deployed,
        }

    def versions(self, actor: Actor, function_id: str) -> list[dict[str, Any]]:
        self.core.require(access.can_read_function(actor, function_id))
        fv = tables.function_versions
        with self.core.tx() as conn:
            latest = self._row(conn, function_id)["latest_version"]
            rows = conn.execute(
                select(fv).where(fv.c.function_id == function_id).order_by(fv.c.number.desc())
            ).mappings()
            return [self._version_view(conn, r, latest) for r in rows.all()]

    def _version_row(self, conn: Connection, function_id: str, version_id: str) -> RowMapping:
        fv = tables.function_versions
        row = conn.execute(select(fv).where(fv.c.id == version_id, fv.c.function_id == function_id)).mappings().first()
        if row is None:
            raise NotFound(f"function {function_id} has no version {version_id!r}")
        return row

    def version(self, actor: Actor, function_id: str, version_id: str) -> dict[str, Any]:
        self.core.require(access.can_read_function(actor, function_id))
        with self.core.tx() as conn:
            latest = self._row(conn, function_id)["latest_version"]
            return self._version_view(conn, self._version_row(conn, function_id, version_id), latest)

    def restore(self, actor: Actor, function_id: str, version_id: str) -> dict[str, Any]:
        """A copy of the version becomes the LATEST (and the draft); no instance changes."""
        self.core.require(access.can_edit_function(actor, function_id))
        with self.core.tx() as conn:
            row = self._row(conn, function_id)
            source = self._version_row(conn, function_id, version_id)
            fields = {
                "code": source["code"],
                "settings": source["settings"],
                "language": source["language"],
                "batchMaxCount": source["batch_max_count"],
            }
            number = row["latest_version"] + 1
            new_id = self._add_version(conn, actor, function_id, number, fields, restored_from=version_id)
            conn.execute(
                update(tables.functions)
                .where(tables.functions.c.id == function_id)
                .values(
                    code=fields["code"],
                    settings=fields["settings"],
                    language=fields["language"],
                    batch_max_count=fields["batchMaxCount"],
                    latest_version=number,
                    updated_at=self.core.clock(),
                )
            )
            view = self._version_view(conn, self._version_row(conn, function_id, new_id), number)
            self.core.audit(
                conn,
                actor,
                "function.restore",
                "function",
                function_id,
                {"version": source["number"]},
                {"version": number},
            )
            return view

    # --- deploy ----------------------------------------------------------------------------------
    def deploy(self, actor: Actor, function_id: str, instance_ids: list[str] | None) -> dict[str, Any]:
        self.core.require(access.can_deploy(actor, function_id))
        inst = tables.instances
        with self.core.tx() as conn:
            row = self._row(conn, function_id)
            latest_id = self._latest_version_id(conn, function_id, row["latest_version"])
            owned = {
                r.id: r.version_id
                for r in conn.execute(select(inst.c.id, inst.c.version_id).where(inst.c.function_id == function_id))
            }
            chosen = list(owned) if instance_ids is None else instance_ids
            for index, instance_id in enumerate(chosen):
                if instance_id not in owned:
                    raise InvalidInput(
                        f"{instance_id!r} is not an instance of function {function_id}", field=f"instanceIds[{index}]"
                    )
            now = self.core.clock()
            if chosen:
                conn.execute(
                    update(inst)
                    .where(inst.c.id.in_(chosen))
                    .values(version_id=latest_id, deployed_at=now, updated_at=now)
                )
            self.core.audit(
                conn,
                actor,
                "function.deploy",
                "function",
                function_id,
                {"instances": {i: owned[i] for i in chosen}},
                {"versionId": latest_id, "version": row["latest_version"], "instanceIds": chosen},
            )
            return {"function": self.view(conn, row), "deployedInstanceIds": chosen, "versionId": latest_id}

    # --- preview ---------------------------------------------------------------------------------
    async def preview(self, actor: Actor, body: Mapping[str, Any]) -> dict[str, Any]:
        """Run code (or a saved function's latest version) on one event or a batch, isolated."""
        function_id = body.get("functionId")
        if function_id is not None and not isinstance(function_id, str):
            raise InvalidInput("functionId must be a string", field="functionId")
        self.core.require(access.can_preview(actor, function_id))
        schema_data: Any = body.get("settingsSchema")
        if function_id is not None:
            with self.core.tx() as conn:
                row = self._row(conn, function_id)
            code = body.get("code") or row["code"]
            schema_data = row["settings"] if schema_data is None else schema_data
        else:
            code = body.get("code")
        language = body.get("language") or (row["language"] if function_id is not None else "python")
        if language not in LANGUAGES:
            raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}", field="language")
        code = validate_code(code, language=language)
        settings = body.get("settings") or {}
        if not isinstance(settings, dict):
            raise InvalidInput("settings must be an object", field="settings")
        try:
            schema = [s.to_dict() for s in _schema(schema_data)] if schema_data is not None else None
        except SettingsSchemaError as exc:
            raise InvalidInput(str(exc), field="settingsSchema") from None
        payload = body.get("payload")
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_PREVIEW_EVENTS:
                raise InvalidInput(f"payload must hold 1 to {MAX_PREVIEW_EVENTS} events", field="payload")
            kwargs: dict[str, Any] = {"batch": payload}
        elif isinstance(payload, dict):
            kwargs = {"event": payload}
        else:
            raise InvalidInput("payload must be an event object or an array of events", field="payload")
        key = actor.token_id or actor.name
        if self._previews.get(key, 0) >= self.max_previews:
            raise RateLimited(f"at most {self.max_previews} previews may run at once per token", retry_after_s=1)
        self._previews[key] = self._previews.get(key, 0) + 1
        try:
            run = await self.preview_runner(code, settings=settings, schema=schema, language=language, **kwargs)
        except FunctionLoadError as exc:
            raise InvalidInput(str(exc), field="code", line=exc.line) from None
        finally:
            self._previews[key] -= 1
        return run.to_dict()
