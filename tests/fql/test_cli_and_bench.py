"""Smoke tests: `sluice fql check` (tree, result, exit codes, caret) and `sluice bench fql` (tiny run)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sluice.bench.fql import CONDITION, ceiling, format_report, load_events, run_benchmark
from sluice.cli.main import cli
from sluice.fql import compile_fql


def test_check_prints_the_tree() -> None:
    result = CliRunner().invoke(cli, ["fql", "check", "type = 'track' and properties.total > 100"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "and",
        "  =",
        "    path type",
        '    "track"',
        "  >",
        "    path properties.total",
        "    100",
    ]


def test_check_with_an_event_prints_the_result_and_exits_0_or_1(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"type": "track", "properties": {"total": 250}}))
    matched = CliRunner().invoke(cli, ["fql", "check", "properties.total > 100", "--event", str(event)])
    assert (matched.exit_code, matched.output) == (0, "true\n")
    missed = CliRunner().invoke(cli, ["fql", "check", "properties.total > 300", "--event", str(event), "--json"])
    assert missed.exit_code == 1 and json.loads(missed.output) == {"valid": True, "result": False}


def test_check_syntax_error_shows_position_and_caret_and_exits_2() -> None:
    result = CliRunner().invoke(cli, ["fql", "check", "type = 'track' and"])
    assert result.exit_code == 2
    assert "at position 18: expected a value" in result.output
    assert result.output.splitlines()[-2:] == ["  type = 'track' and", "                    ^"]
    as_json = CliRunner().invoke(cli, ["fql", "check", "type =", "--json"])
    assert as_json.exit_code == 2 and json.loads(as_json.output)["position"] == 6


def test_check_bad_event_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert CliRunner().invoke(cli, ["fql", "check", "true", "--event", str(bad)]).exit_code == 2
    bad.write_text("{not json")
    assert CliRunner().invoke(cli, ["fql", "check", "true", "--event", str(bad)]).exit_code == 2
    assert CliRunner().invoke(cli, ["fql", "check", "true", "--event", str(tmp_path / "nope")]).exit_code == 2


def test_bench_ceiling_agrees_with_the_condition() -> None:
    condition = compile_fql(CONDITION)
    for event in load_events():
        assert condition(event) is ceiling(event), event


def test_bench_fql_json_tiny_run() -> None:
    result = CliRunner().invoke(cli, ["bench", "fql", "--evaluations", "2000", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["fqlEvaluationsPerSec"] > 0 and report["ceilingEvaluationsPerSec"] > 0
    assert report["agreesWithCeiling"] is True
    assert "compiled FQL" in format_report(run_benchmark(count=500))
