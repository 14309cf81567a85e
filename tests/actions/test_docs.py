"""docs/destinations.md: its config example validates, its event maps to the output it shows, and
every row of its directive tables gives the result it claims."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sluice.actions import compile_mapping, compile_subscriptions, validate_actions_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "destinations.md"
TEXT = DOC.read_text()
BLOCK = re.compile(r"```json\n(?P<body>.*?)^```\s*\n\s*<!-- actions: (?P<name>\w+) -->", re.DOTALL | re.MULTILINE)
BLOCKS: dict[str, Any] = {m["name"]: json.loads(m["body"]) for m in BLOCK.finditer(TEXT)}
SPAN = re.compile(r"`([^`]+)`")


def directive_rows() -> list[tuple[str, str]]:
    section = TEXT.split("### Directives", 1)[1].split("### Differences", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith('`{"@'):
            rows.append((cells[0], cells[1]))
    return rows


ROWS = directive_rows()


def test_the_blocks_are_found() -> None:
    assert set(BLOCKS) == {"config", "event", "output"}
    assert len(ROWS) >= 20


def test_the_config_example_validates_and_maps_the_event_as_shown() -> None:
    validated = validate_actions_config(BLOCKS["config"])
    first, pages = compile_subscriptions(validated)
    assert first.trigger(BLOCKS["event"]) is True
    assert pages.trigger(BLOCKS["event"]) is False
    assert first.mapper(BLOCKS["event"]) == BLOCKS["output"]
    assert (pages.batch, pages.batch_size, pages.method) == (True, 200, "POST")


@pytest.mark.parametrize(("mapping_cell", "result_cell"), ROWS, ids=[r[0][:60] for r in ROWS])
def test_directive_table_rows(mapping_cell: str, result_cell: str) -> None:
    event = BLOCKS["event"]
    mapping = json.loads(SPAN.findall(mapping_cell)[0])
    produced = compile_mapping({"value": mapping})(event)
    if result_cell.startswith("missing"):
        assert produced == {}
    elif result_cell.startswith("the whole event"):
        assert produced == {"value": event}
    elif result_cell.startswith("the list as it is"):
        assert produced == {"value": event["properties"]["products"]}
    else:
        assert produced == {"value": json.loads(SPAN.findall(result_cell)[0])}
