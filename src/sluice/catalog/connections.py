"""Sources (with their write keys), destinations, and insert-function instances (use-cases)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import RowMapping

from sluice.catalog import access, tables
from sluice.catalog.access import Actor
from sluice.catalog.core import Core, is_masked, iso, mask_value
from sluice.delivery.config import validate_config
from sluice.errors import Conflict, InvalidInput, NotFound
from sluice.functions.settings import SettingSpec, parse_schema, validate_values

MAX_NAME = 200


def _name(data: Mapping[str, Any], *, required: bool) -> str | None:
    if "name" not in data and not required:
        return None
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name is required", field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name is over {MAX_NAME} characters", field="name")
    return name


def _enabled(data: Mapping[str, Any], default: bool | None) -> bool | None:
    if "enabled" not in data:
        return default
    if not isinstance(data["enabled"], bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    return bool(data["enabled"])


def _name_and_enabled(data: Mapping[str, Any]) -> dict[str, Any]:
    """The column values of a PATCH's ``name`` and ``enabled``, validated."""
    values: dict[str, Any] = {}
    name = _name(data, required=False)
    if name is not None:
        values["name"] = name
    enabled = _enabled(data, None)
    if enabled is not None:
        values["enabled"] = enabled
    return values


def new_write_key() -> str:
    return secrets.token_urlsafe(24)


class SourcesService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _row(self, conn: Connection, source_id: str) -> RowMapping:
        row = conn.execute(select(tables.sources).where(tables.sources.c.id == source_id)).mappings().first()
        if row is None:
            raise NotFound(f"no source with id {source_id!r}")
        return row

    def view(self, conn: Connection, row: RowMapping, actor: Actor) -> dict[str, Any]:
        wk = tables.write_keys
        keys = [
            r.key for r in conn.execute(select(wk.c.key).where(wk.c.source_id == row["id"]).order_by(wk.c.created_at))
        ]
        if not access.sees_secrets_of_connections(actor):
            keys = [mask_value(k) for k in keys]
        return {
            "id": row["id"],
            "name": row["name"],
            "enabled": row["enabled"],
            "writeKeys": keys,
            "createdAt": iso(row["created_at"]),
            "updatedAt": iso(row["updated_at"]),
        }

    def list_all(self, actor: Actor) -> list[dict[str, Any]]:
        self.core.require(access.can_read_connections(actor))
        with self.core.tx() as conn:
            rows = conn.execute(select(tables.sources).order_by(tables.sources.c.created_at, tables.sources.c.id))
            return [self.view(conn, r, actor) for r in rows.mappings().all()]

    def get(self, actor: Actor, source_id: str) -> dict[str, Any]:
        self.core.require(access.can_read_connections(actor))
        with self.core.tx() as conn:
            return self.view(conn, self._row(conn, source_id), actor)

    def create(self, actor: Actor, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_manage_connections(actor))
        name = _name(data, required=True)
        enabled = _enabled(data, True)
        now = self.core.clock()
        source_id = self.core.ids("src")
        with self.core.tx() as conn:
            conn.execute(
                insert(tables.sources).values(id=source_id, name=name, enabled=enabled, created_at=now, updated_at=now)
            )
            conn.execute(insert(tables.write_keys).values(key=new_write_key(), source_id=source_id, created_at=now))
            view = self.view(conn, self._row(conn, source_id), actor)
            self.core.audit(conn, actor, "source.create", "source", source_id, None, _masked_source(view))
            return view

    def update(self, actor: Actor, source_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_manage_connections(actor))
        values = _name_and_enabled(data)
        with self.core.tx() as conn:
            before = self.view(conn, self._row(conn, source_id), actor)
            if values:
                values["updated_at"] = self.core.clock()
                conn.execute(update(tables.sources).where(tables.sources.c.id == source_id).values(**values))
            after = self.view(conn, self._row(conn, source_id), actor)
            self.core.audit(
                conn, actor, "source.update", "source", source_id, _masked_source(before), _masked_source(after)
            )
            return after

    def resolve_write_key(self, key: str) -> tuple[str, bool] | None:
        """For ingest: the (source id, enabled) a write key belongs to, or None. No actor: the key is the credential."""
        wk, src = tables.write_keys, tables.sources
        with self.core.tx() as conn:
            row = conn.execute(
                select(src.c.id, src.c.enabled).join(wk, wk.c.source_id == src.c.id).where(wk.c.key == key)
            ).first()
        return (str(row.id), bool(row.enabled)) if row is not None else None

    def add_write_key(self, actor: Actor, source_id: str) -> dict[str, Any]:
        """A source may have several write keys (e.g. while rotating one)."""
        self.core.require(access.can_manage_connections(actor))
        with self.core.tx() as conn:
            before = self.view(conn, self._row(conn, source_id), actor)
            conn.execute(
                insert(tables.write_keys).values(key=new_write_key(), source_id=source_id, created_at=self.core.clock())
            )
            after = self.view(conn, self._row(conn, source_id), actor)
            self.core.audit(
                conn, actor, "source.add_write_key", "source", source_id, _masked_source(before), _masked_source(after)
            )
            return after

    def remove_write_key(self, actor: Actor, source_id: str, key: str) -> dict[str, Any]:
        self.core.require(access.can_manage_connections(actor))
        wk = tables.write_keys
        with self.core.tx() as conn:
            before = self.view(conn, self._row(conn, source_id), actor)
            if key not in before["writeKeys"]:
                raise NotFound(f"source {source_id} has no such write key")
            if len(before["writeKeys"]) == 1:
                raise Conflict("a source keeps at least one write key; add another before removing this one")
            conn.execute(delete(wk).where(wk.c.source_id == source_id, wk.c.key == key))
            after = self.view(conn, self._row(conn, source_id), actor)
            self.core.audit(
                conn,
                actor,
                "source.remove_write_key",
                "source",
                source_id,
                _masked_source(before),
                _masked_source(after),
            )
            return after

    def delete(self, actor: Actor, source_id: str) -> None:
        self.core.require(access.can_manage_connections(actor))
        with self.core.tx() as conn:
            before = self.view(conn, self._row(conn, source_id), actor)
            conn.execute(delete(tables.write_keys).where(tables.write_keys.c.source_id == source_id))
            conn.execute(delete(tables.destination_sources).where(tables.destination_sources.c.source_id == source_id))
            conn.execute(delete(tables.sources).where(tables.sources.c.id == source_id))
            self.core.audit(conn, actor, "source.delete", "source", source_id, _masked_source(before), None)


def _masked_source(view: Mapping[str, Any]) -> dict[str, Any]:
    return {**view, "writeKeys": [mask_value(k) for k in view["writeKeys"]]}


class DestinationsService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _row(self, conn: Connection, destination_id: str) -> RowMapping:
        row = (
            conn.execute(select(tables.destinations).where(tables.destinations.c.id == destination_id))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"no destination with id {destination_id!r}")
        return row

    def view(self, conn: Connection, row: RowMapping) -> dict[str, Any]:
        ds = tables.destination_sources
        source_ids = [r.source_id for r in conn.execute(select(ds.c.source_id).where(ds.c.destination_id == row["id"]))]
        return {
            "id": row["id"],
            "name": row["name"],
            "type": row["type"],
            "config": self.core.masked_config(row["type"], row["config"]),
            "sourceIds": sorted(source_ids),
            "enabled": row["enabled"],
            "createdAt": iso(row["created_at"]),
            "updatedAt": iso(row["updated_at"]),
        }

    def list_all(self, actor: Actor) -> list[dict[str, Any]]:
        self.core.require(access.can_read_connections(actor))
        with self.core.tx() as conn:
            rows = conn.execute(
                select(tables.destinations).order_by(tables.destinations.c.created_at, tables.destinations.c.id)
            )
            return [self.view(conn, r) for r in rows.mappings().all()]

    def get(self, actor: Actor, destination_id: str) -> dict[str, Any]:
        self.core.require(access.can_read_connections(actor))
        with self.core.tx() as conn:
            return self.view(conn, self._row(conn, destination_id))

    def _source_ids(self, conn: Connection, data: Mapping[str, Any]) -> list[str] | None:
        if "sourceIds" not in data:
            return None
        ids = data["sourceIds"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InvalidInput("sourceIds must be a list of source ids", field="sourceIds")
        known = {r.id for r in conn.execute(select(tables.sources.c.id).where(tables.sources.c.id.in_(ids)))}
        for index, source_id in enumerate(ids):
            if source_id not in known:
                raise InvalidInput(f"no source with id {source_id!r}", field=f"sourceIds[{index}]")
        return sorted(set(ids))

    def create(self, actor: Actor, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_manage_connections(actor))
        name = _name(data, required=True)
        type_ = data.get("type", "webhook")
        if not isinstance(type_, str) or not type_.strip() or len(type_) > 100:
            raise InvalidInput("type must be a non-empty string", field="type")
        config = validate_config(type_, data.get("config", {}))
        enabled = _enabled(data, True)
        now = self.core.clock()
        destination_id = self.core.ids("dst")
        with self.core.tx() as conn:
            source_ids = self._source_ids(conn, data) or []
            conn.execute(
                insert(tables.destinations).values(
                    id=destination_id, name=name, type=type_, config=self.core.seal_config(type_, config),
                    enabled=enabled, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            for source_id in source_ids:
                conn.execute(
                    insert(tables.destination_sources).values(destination_id=destination_id, source_id=source_id)
                )
            view = self.view(conn, self._row(conn, destination_id))
            self.core.audit(conn, actor, "destination.create", "destination", destination_id, None, view)
            return view

    def update(self, actor: Actor, destination_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        self.core.require(access.can_manage_connections(actor))
        values = _name_and_enabled(data)
        with self.core.tx() as conn:
            row = self._row(conn, destination_id)
            before = self.view(conn, row)
            if "config" in data:
                if not isinstance(data["config"], dict):
                    raise InvalidInput("config must be an object", field="config")
                previous = self.core.open_config(row["type"], row["config"])
                clear = validate_config(row["type"], self.core.unmask_config(row["type"], data["config"], previous))
                values["config"] = self.core.seal_config(row["type"], clear)
            source_ids = self._source_ids(conn, data)
            if source_ids is not None:
                ds = tables.destination_sources
                conn.execute(delete(ds).where(ds.c.destination_id == destination_id))
                for source_id in source_ids:
                    conn.execute(insert(ds).values(destination_id=destination_id, source_id=source_id))
            values["updated_at"] = self.core.clock()
            conn.execute(update(tables.destinations).where(tables.destinations.c.id == destination_id).values(**values))
            after = self.view(conn, self._row(conn, destination_id))
            self.core.audit(conn, actor, "destination.update", "destination", destination_id, before, after)
            return after

    def delete(self, actor: Actor, destination_id: str) -> None:
        self.core.require(access.can_manage_connections(actor))
        with self.core.tx() as conn:
            before = self.view(conn, self._row(conn, destination_id))
            owned = select(tables.instances.c.id).where(tables.instances.c.destination_id == destination_id)
            conn.execute(delete(tables.function_store).where(tables.function_store.c.instance_id.in_(owned)))
            conn.execute(delete(tables.instances).where(tables.instances.c.destination_id == destination_id))
            conn.execute(
                delete(tables.destination_sources).where(tables.destination_sources.c.destination_id == destination_id)
            )
            conn.execute(delete(tables.destinations).where(tables.destinations.c.id == destination_id))
            self.core.audit(conn, actor, "destination.delete", "destination", destination_id, before, None)


def _check_resource_type(resource_type: str, destination_type: str) -> None:
    """A DESTINATION function is the destination of a ``function`` destination, and only that."""
    if (resource_type == "DESTINATION") != (destination_type == "function"):
        wanted = "DESTINATION" if destination_type == "function" else "INSERT_DESTINATION"
        raise InvalidInput(
            f"a {destination_type!r} destination takes a function with resourceType {wanted}; "
            f"this function's resourceType is {resource_type}",
            field="functionId",
        )


class InstancesService:
    """Insert-function instances: one function connected to one destination, with its settings."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def _row(self, conn: Connection, instance_id: str) -> RowMapping:
        row = conn.execute(select(tables.instances).where(tables.instances.c.id == instance_id)).mappings().first()
        if row is None:
            raise NotFound(f"no insert function instance with id {instance_id!r}")
        return row

    def _function(self, conn: Connection, function_id: object, field: str = "functionId") -> RowMapping:
        if not isinstance(function_id, str):
            raise InvalidInput("functionId is required", field=field)
        row = conn.execute(select(tables.functions).where(tables.functions.c.id == function_id)).mappings().first()
        if row is None:
            raise InvalidInput(f"no function with id {function_id!r}", field=field)
        return row

    def _schema_of_version(self, conn: Connection, version_id: str) -> tuple[SettingSpec, ...]:
        fv = tables.function_versions
        stored = conn.execute(select(fv.c.settings).where(fv.c.id == version_id)).scalar()
        return parse_schema(stored or [])

    def view(self, conn: Connection, row: RowMapping) -> dict[str, Any]:
        fv = tables.function_versions
        version = conn.execute(select(fv.c.number).where(fv.c.id == row["version_id"])).scalar()
        latest = conn.execute(
            select(tables.functions.c.latest_version).where(tables.functions.c.id == row["function_id"])
        ).scalar()
        schema = self._schema_of_version(conn, row["version_id"])
        clear = self.core.open_settings(schema, row["settings"])
        return {
            "id": row["id"],
            "functionId": row["function_id"],
            "classId": row["function_id"],
            "integrationId": row["destination_id"],
            "name": row["name"],
            "enabled": row["enabled"],
            "settings": self.core.masked_settings(schema, row["settings"], clear),
            "versionId": row["version_id"],
            "version": version,
            "isLatestVersion": version == latest,
            "deployedAt": iso(row["deployed_at"]),
            "createdAt": iso(row["created_at"]),
            "updatedAt": iso(row["updated_at"]),
        }

    def list_all(
        self, actor: Actor, *, function_id: str | None = None, destination_id: str | None = None
    ) -> list[dict[str, Any]]:
        inst = tables.instances
        query = select(inst).order_by(inst.c.created_at, inst.c.id)
        if function_id:
            query = query.where(inst.c.function_id == function_id)
        if destination_id:
            query = query.where(inst.c.destination_id == destination_id)
        with self.core.tx() as conn:
            rows = conn.execute(query).mappings().all()
            return [self.view(conn, r) for r in rows if access.can_read_function(actor, r["function_id"]).allowed]

    def get(self, actor: Actor, instance_id: str) -> dict[str, Any]:
        with self.core.tx() as conn:
            row = self._row(conn, instance_id)
            self.core.require(access.can_read_function(actor, row["function_id"]))
            return self.view(conn, row)

    def _check_settings(self, schema: tuple[SettingSpec, ...], values: object) -> dict[str, Any]:
        if not isinstance(values, dict):
            raise InvalidInput("settings must be an object", field="settings")
        problems = validate_values(schema, values)
        if problems:
            bad = next((s.name for s in schema if f"'{s.name}'" in problems[0]), None)
            if bad is None:
                bad = next((name for name in values if f"'{name}'" in problems[0]), None)
            raise InvalidInput("; ".join(problems), field=f"settings.{bad}" if bad else "settings")
        return values

    def create(self, actor: Actor, data: Mapping[str, Any]) -> dict[str, Any]:
        with self.core.tx() as conn:
            function = self._function(conn, data.get("functionId"))
            self.core.require(access.can_manage_instance(actor, function["id"]))
            self.core.require(access.can_read_function(actor, function["id"]))
            destination_id = data.get("integrationId")
            if not isinstance(destination_id, str):
                raise InvalidInput("integrationId (the destination's id) is required", field="integrationId")
            destination_type = conn.execute(
                select(tables.destinations.c.type).where(tables.destinations.c.id == destination_id)
            ).scalar()
            if destination_type is None:
                raise InvalidInput(f"no destination with id {destination_id!r}", field="integrationId")
            _check_resource_type(function["resource_type"], destination_type)
            taken = conn.execute(
                select(tables.instances.c.id).where(tables.instances.c.destination_id == destination_id)
            ).scalar()
            if taken:
                raise Conflict(
                    f"destination {destination_id} already has an insert function ({taken}); one per destination"
                )
            version_id = str(
                conn.execute(
                    select(tables.function_versions.c.id).where(
                        tables.function_versions.c.function_id == function["id"],
                        tables.function_versions.c.number == function["latest_version"],
                    )
                ).scalar_one()
            )
            schema = self._schema_of_version(conn, version_id)
            values = self._check_settings(schema, data.get("settings", {}))
            name = _name(data, required=False) or function["display_name"]
            enabled = _enabled(data, False)
            now = self.core.clock()
            instance_id = self.core.ids("ifi")
            conn.execute(
                insert(tables.instances).values(
                    id=instance_id, function_id=function["id"], destination_id=destination_id, name=name,
                    enabled=enabled, settings=self.core.seal_settings(schema, values), version_id=version_id,
                    deployed_at=now, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            view = self.view(conn, self._row(conn, instance_id))
            self.core.audit(conn, actor, "instance.create", "insert_function_instance", instance_id, None, view)
            return view

    def update(self, actor: Actor, instance_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        with self.core.tx() as conn:
            row = self._row(conn, instance_id)
            self.core.require(access.can_manage_instance(actor, row["function_id"]))
            before = self.view(conn, row)
            values = _name_and_enabled(data)
            enabled = values.get("enabled")
            if "settings" in data:
                schema = self._schema_of_version(conn, row["version_id"])
                incoming = data["settings"]
                if not isinstance(incoming, dict):
                    raise InvalidInput("settings must be an object", field="settings")
                clear_before = self.core.open_settings(schema, row["settings"])
                sensitive = {s.name for s in schema if s.sensitive}
                # a masked secret sent back as it was shown keeps the stored value
                effective = {
                    k: clear_before[k] if k in sensitive and is_masked(v) and k in clear_before else v
                    for k, v in incoming.items()
                }
                self._check_settings(schema, effective)
                values["settings"] = self.core.seal_settings(schema, incoming, previous=row["settings"])
            if values:
                values["updated_at"] = self.core.clock()
                conn.execute(update(tables.instances).where(tables.instances.c.id == instance_id).values(**values))
            after = self.view(conn, self._row(conn, instance_id))
            action = (
                "instance.enable"
                if enabled is True and not row["enabled"]
                else ("instance.disable" if enabled is False and row["enabled"] else "instance.update")
            )
            self.core.audit(conn, actor, action, "insert_function_instance", instance_id, before, after)
            return after

    def delete(self, actor: Actor, instance_id: str) -> None:
        with self.core.tx() as conn:
            row = self._row(conn, instance_id)
            self.core.require(access.can_manage_instance(actor, row["function_id"]))
            before = self.view(conn, row)
            conn.execute(delete(tables.function_store).where(tables.function_store.c.instance_id == instance_id))
            conn.execute(delete(tables.instances).where(tables.instances.c.id == instance_id))
            self.core.audit(conn, actor, "instance.delete", "insert_function_instance", instance_id, before, None)

    def runtime_settings(self, instance_id: str) -> dict[str, Any]:
        """The decrypted setting values an instance's handlers receive (for the pipeline)."""
        with self.core.tx() as conn:
            row = self._row(conn, instance_id)
            return self.core.open_settings(self._schema_of_version(conn, row["version_id"]), row["settings"])
