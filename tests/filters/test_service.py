"""FiltersService on SQLite and PostgreSQL: CRUD, limits, permissions, audit, cascades, for_pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.catalog.access import SYSTEM, Actor, Role
from sluice.catalog.filters import MAX_PER_DESTINATION
from sluice.catalog.service import Catalog
from sluice.config import Config
from sluice.errors import Conflict, Forbidden, InvalidInput, NotFound
from sluice.filters import Dropped, Kept, apply_filters

READ_ONLY = Actor("ro", frozenset({Role.FUNCTIONS_READ_ONLY}))
SOURCE_ADMIN = Actor("src-admin", frozenset({Role.SOURCE_ADMIN}))
NOBODY = Actor("nobody", frozenset())

DROP_EMAIL = {"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}


@pytest.fixture
def catalog(database_url: str, tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog.open(Config(data_dir=tmp_path / "data", database_url=database_url))
    try:
        yield catalog
    finally:
        catalog.close()


def destination(catalog: Catalog, **overrides: Any) -> str:
    body = {"name": "Hook", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}, **overrides}
    return str(catalog.destinations.create(SYSTEM, body)["id"])


def source(catalog: Catalog, name: str = "Web") -> str:
    return str(catalog.sources.create(SYSTEM, {"name": name})["id"])


def test_crud_and_audit(catalog: Catalog) -> None:
    dst = destination(catalog)
    src = source(catalog)
    created = catalog.filters.create(
        SOURCE_ADMIN,
        dst,
        {"if": "all", "actions": [DROP_EMAIL], "title": "No emails", "sourceId": src, "description": "PII"},
    )
    fid = created["id"]
    assert fid.startswith("df_")
    assert created == {
        "id": fid,
        "destinationId": dst,
        "sourceId": src,
        "if": "all",
        "actions": [DROP_EMAIL],
        "title": "No emails",
        "description": "PII",
        "enabled": True,
        "createdAt": created["createdAt"],
        "updatedAt": created["updatedAt"],
    }
    assert created["createdAt"].endswith("Z")
    assert catalog.filters.get(READ_ONLY, dst, fid) == created
    assert catalog.filters.list_all(READ_ONLY, dst) == [created]

    updated = catalog.filters.update(SOURCE_ADMIN, dst, fid, {"enabled": False, "sourceId": None, "title": "Off"})
    assert (updated["enabled"], updated["sourceId"], updated["title"], updated["actions"]) == (
        False,
        None,
        "Off",
        [DROP_EMAIL],
    )
    sample = {"type": "SAMPLE", "percent": 0.5, "path": "userId"}
    updated = catalog.filters.update(SOURCE_ADMIN, dst, fid, {"actions": [sample]})
    assert updated["actions"] == [sample] and updated["title"] == "Off"

    catalog.filters.delete(SOURCE_ADMIN, dst, fid)
    assert catalog.filters.list_all(READ_ONLY, dst) == []
    with pytest.raises(NotFound):
        catalog.filters.get(READ_ONLY, dst, fid)

    trail = catalog.admin.audit_events(SYSTEM, resource_id=fid)
    assert [e["action"] for e in trail] == ["filter.delete", "filter.update", "filter.update", "filter.create"]
    assert all(e["resourceType"] == "destination_filter" and e["actor"] == "src-admin" for e in trail)
    assert trail[-1]["before"] is None and trail[-1]["after"]["title"] == "No emails"
    assert trail[0]["after"] is None and trail[0]["before"]["actions"] == [sample]


def test_permissions(catalog: Catalog) -> None:
    dst = destination(catalog)
    with pytest.raises(Forbidden, match="Source Admin"):
        catalog.filters.create(READ_ONLY, dst, {"if": "all", "actions": [{"type": "DROP"}]})
    fid = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}]})["id"]
    with pytest.raises(Forbidden):
        catalog.filters.update(READ_ONLY, dst, fid, {"enabled": False})
    with pytest.raises(Forbidden):
        catalog.filters.delete(READ_ONLY, dst, fid)
    with pytest.raises(Forbidden):
        catalog.filters.list_all(NOBODY, dst)
    assert len(catalog.filters.list_all(READ_ONLY, dst)) == 1


def test_unknown_destination_filter_and_source(catalog: Catalog) -> None:
    dst = destination(catalog)
    other = destination(catalog, name="Other")
    with pytest.raises(NotFound, match="no destination"):
        catalog.filters.create(SYSTEM, "dst_nope", {"if": "all", "actions": [{"type": "DROP"}]})
    with pytest.raises(NotFound):
        catalog.filters.list_all(SYSTEM, "dst_nope")
    fid = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}]})["id"]
    with pytest.raises(NotFound):  # a filter is found through its own destination only
        catalog.filters.get(SYSTEM, other, fid)
    with pytest.raises(NotFound):
        catalog.filters.delete(SYSTEM, other, fid)
    with pytest.raises(InvalidInput) as info:
        catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}], "sourceId": "src_nope"})
    assert info.value.field == "sourceId"
    with pytest.raises(InvalidInput) as info:
        catalog.filters.update(SYSTEM, dst, fid, {"sourceId": "src_nope"})
    assert info.value.field == "sourceId"


def test_invalid_input_changes_nothing(catalog: Catalog) -> None:
    dst = destination(catalog)
    fid = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}], "title": "T"})["id"]
    before = catalog.filters.get(SYSTEM, dst, fid)
    patches: list[tuple[dict[str, Any], str]] = [
        ({"if": None}, "if"),
        ({"if": "type = = 1"}, "if"),
        ({"actions": None}, "actions"),
        ({"actions": [{"type": "SAMPLE", "percent": 2}]}, "actions[0].percent"),
        ({"title": "x" * 65}, "title"),
        ({"bogus": 1}, "bogus"),
    ]
    for patch, field in patches:
        with pytest.raises(InvalidInput) as info:
            catalog.filters.update(SYSTEM, dst, fid, patch)
        assert info.value.field == field, patch
    assert catalog.filters.get(SYSTEM, dst, fid) == before


def test_at_most_ten_per_destination(catalog: Catalog) -> None:
    dst = destination(catalog)
    other = destination(catalog, name="Other")
    ids = [
        catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}], "title": f"f{i}"})["id"]
        for i in range(MAX_PER_DESTINATION)
    ]
    with pytest.raises(Conflict, match="10"):
        catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}]})
    catalog.filters.create(SYSTEM, other, {"if": "all", "actions": [{"type": "DROP"}]})  # per destination
    assert [f["id"] for f in catalog.filters.list_all(SYSTEM, dst)] == ids  # in creation order
    catalog.filters.delete(SYSTEM, dst, ids[3])
    new = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}], "title": "last"})
    assert [f["id"] for f in catalog.filters.list_all(SYSTEM, dst)] == [*ids[:3], *ids[4:], new["id"]]


def test_deleting_the_destination_or_the_source_removes_its_filters(catalog: Catalog) -> None:
    dst = destination(catalog)
    src = source(catalog)
    unscoped = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}]})
    scoped = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}], "sourceId": src})
    catalog.sources.delete(SYSTEM, src)
    assert scoped["id"] != unscoped["id"]
    assert [f["id"] for f in catalog.filters.list_all(SYSTEM, dst)] == [unscoped["id"]]
    catalog.destinations.delete(SYSTEM, dst)
    assert catalog.filters.for_pipeline() == {}


def test_for_pipeline(catalog: Catalog) -> None:
    dst, other, bare = destination(catalog), destination(catalog, name="Other"), destination(catalog, name="Bare")
    src = source(catalog)
    first = catalog.filters.create(
        SYSTEM, dst, {"if": "all", "actions": [DROP_EMAIL], "title": "strip", "sourceId": src}
    )
    off = catalog.filters.create(SYSTEM, dst, {"if": "all", "actions": [{"type": "DROP"}], "enabled": False})
    drop = catalog.filters.create(SYSTEM, other, {"if": "all", "actions": [{"type": "DROP"}], "title": "drop"})

    plans = catalog.filters.for_pipeline()
    assert set(plans) == {dst, other} and bare not in plans
    assert [f.id for f in plans[dst]] == [first["id"]]  # disabled ones left out
    assert plans[dst][0].destination_id == dst and plans[dst][0].source_id == src
    with catalog.core.tx() as conn:
        every = catalog.filters.for_pipeline(conn, include_disabled=True)
    assert [f.id for f in every[dst]] == [first["id"], off["id"]]

    outcome = apply_filters(plans[dst], src, {"type": "track", "properties": {"email": "e", "plan": "p"}})
    assert outcome == Kept({"type": "track", "properties": {"plan": "p"}}, True)
    outcome = apply_filters(plans[other], src, {"type": "track"})
    assert outcome == Dropped(drop["id"], "drop", "dropped by filter 'drop' (DROP)")


def test_preview(catalog: Catalog) -> None:
    payload = {"type": "track", "messageId": "m-1", "userId": "u", "properties": {"email": "e", "plan": "p"}}
    result = catalog.filters.preview(READ_ONLY, {"if": "all", "actions": [DROP_EMAIL]}, payload)
    assert result == {
        "inputPayload": payload,
        "result": {"type": "track", "messageId": "m-1", "userId": "u", "properties": {"plan": "p"}},
        "reason": None,
    }
    assert payload["properties"] == {"email": "e", "plan": "p"}
    dropped = catalog.filters.preview(READ_ONLY, {"if": "all", "actions": [{"type": "DROP"}]}, payload)
    assert dropped["result"] is None and dropped["reason"] == "dropped by filter 'if all' (DROP)"
    # SAMPLE without a path: the same payload always gets the same answer
    half = {"if": "all", "actions": [{"type": "SAMPLE", "percent": 0.5}]}
    answers = {
        mid: catalog.filters.preview(READ_ONLY, half, {**payload, "messageId": mid})["result"] is None
        for mid in (f"m-{i}" for i in range(60))
    }
    assert set(answers.values()) == {True, False}
    for mid, was_dropped in answers.items():
        again = catalog.filters.preview(READ_ONLY, half, {**payload, "messageId": mid})
        assert (again["result"] is None) == was_dropped
    with pytest.raises(Forbidden):
        catalog.filters.preview(NOBODY, half, payload)
