"""`sluice fn new` and `sluice fn test`, run as a user runs them: a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "events"


def sluice(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def made(tmp_path: Path) -> Path:
    result = sluice("fn", "new", "enrich", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "enrich"


def test_fn_new_writes_a_function_and_its_definition(made: Path) -> None:
    source = (made / "function.py").read_text()
    for handler in ("on_track", "on_identify", "on_page", "on_screen", "on_group", "on_alias", "on_delete"):
        assert f"async def {handler}(event, settings):" in source
    toml = tomllib.loads((made / "function.toml").read_text())
    assert {"displayName", "description", "language", "resourceType", "batchMaxCount"} <= set(toml)
    assert toml["displayName"] == "enrich" and toml["language"] == "python"
    assert toml["resourceType"] == "INSERT_DESTINATION" and toml["batchMaxCount"] == 20
    assert set(toml["settings"][0]) == {"name", "label", "description", "type", "required", "sensitive"}


def test_fn_new_refuses_an_existing_folder(made: Path) -> None:
    again = sluice("fn", "new", "enrich", cwd=made.parent)
    assert again.returncode == 2
    assert "already exists" in again.stderr


@pytest.mark.parametrize("fixture", ["track", "identify", "page", "screen", "group", "alias", "delete"])
def test_template_passes_every_event_type_through(made: Path, fixture: str) -> None:
    result = sluice("fn", "test", str(made), "--event", str(FIXTURES / f"{fixture}.json"), "--json", cwd=made)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"status", "event", "error", "logs", "requests", "durationMs"}
    assert out["status"] == "ok" and out["error"] is None
    assert out["event"] == json.loads((FIXTURES / f"{fixture}.json").read_text())


def test_json_output_for_a_failure_and_exit_code_one(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "f.py",
        "def on_track(event, settings):\n    print('checking')\n    raise ValidationError('userId is required')\n",
    )
    event = write(tmp_path / "e.json", {"type": "track", "event": "E", "properties": {}})
    result = sluice("fn", "test", str(fn), "--event", str(event), "--json", cwd=tmp_path)
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["status"] == "message_rejected"
    assert out["event"] is None
    assert out["error"] == {"type": "ValidationError", "message": "userId is required"}
    assert out["logs"] == ["checking"]
    assert result.stdout.count("\n") == 1  # exactly one JSON object


@pytest.mark.parametrize(
    ("body", "code"), [("return None", 0), ("raise DropEvent('x')", 0), ("raise RetryError('x')", 1)]
)
def test_exit_code_follows_the_outcome(tmp_path: Path, body: str, code: int) -> None:
    fn = write(tmp_path / "f.py", f"def on_track(event, settings):\n    {body}\n")
    event = write(tmp_path / "e.json", {"type": "track", "event": "E"})
    assert sluice("fn", "test", str(fn), "--event", str(event), cwd=tmp_path).returncode == code


def test_batch_json_shape(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "f.py",
        "def on_batch(events, settings):\n    return [e if e['type'] == 'track' else None for e in events]\n"
        "def on_track(e, s):\n    return e\n",
    )
    result = sluice("fn", "test", str(fn), "--batch", str(FIXTURES / "batch.json"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"status", "error", "results", "logs", "requests", "durationMs"}
    assert [r["status"] for r in out["results"]] == ["filtered", "ok", "ok"]
    assert all(set(r) == {"status", "event", "error"} for r in out["results"])


def test_human_output_shows_outcome_diff_logs_and_requests(tmp_path: Path) -> None:
    fn = write(
        tmp_path / "f.py",
        "async def on_track(event, settings):\n"
        "    event['properties']['tier'] = 'gold'\n"
        "    del event['properties']['title']\n"
        "    log.info('enriched')\n"
        "    try:\n        await fetch('http://127.0.0.1:9/x')\n"
        "    except FetchError:\n        pass\n"
        "    return event\n",
    )
    result = sluice("fn", "test", str(fn), "--event", str(FIXTURES / "track.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Outcome: ok" in result.stdout
    assert '+ properties.tier: "gold"' in result.stdout
    assert '- properties.title: "Intro to Analytics"' in result.stdout
    assert "INFO: enriched" in result.stdout
    assert "GET http://127.0.0.1:9/x → failed:" in result.stdout


def test_settings_schema_from_function_toml_is_applied(made: Path) -> None:
    toml = (made / "function.toml").read_text().replace("required = false", "required = true")
    (made / "function.toml").write_text(toml)
    event = str(FIXTURES / "track.json")
    missing = sluice("fn", "test", str(made), "--event", event, "--json", cwd=made)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["message"] == "setting 'apiKey' (API Key) is required"
    given = sluice("fn", "test", str(made), "--event", event, "--settings", '{"apiKey": "k"}', cwd=made)
    assert given.returncode == 0, given.stdout


def test_code_that_does_not_load_is_reported_with_its_line(tmp_path: Path) -> None:
    fn = write(tmp_path / "f.py", "def on_track(event, settings):\n    return event +\n")
    event = str(FIXTURES / "track.json")
    result = sluice("fn", "test", str(fn), "--event", event, "--json", cwd=tmp_path)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "FunctionSyntaxError" and "f.py, line 2" in error["message"]


def test_timeout_option(tmp_path: Path) -> None:
    fn = write(tmp_path / "f.py", "import asyncio\nasync def on_track(e, s):\n    await asyncio.sleep(30)\n")
    result = sluice(
        "fn", "test", str(fn), "--event", str(FIXTURES / "track.json"), "--timeout", "0.5", "--json", cwd=tmp_path
    )
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["status"] == "timeout" and "0.5 s" in out["error"]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nofile.py", "--event", "e.json"], "nofile.py: no such file or folder"),
        (["f.py", "--event", "missing.json"], "--event missing.json: no such file"),
        (["f.py", "--event", "bad.json"], "--event bad.json: invalid JSON at line 2, column 12"),
        (["f.py", "--event", "list.json"], "use --batch"),
        (["f.py", "--batch", "e.json"], "must hold a non-empty JSON array"),
        (["f.py"], "give exactly one of --event FILE or --batch FILE"),
        (["f.py", "--event", "e.json", "--batch", "list.json"], "give exactly one"),
        (["f.py", "--event", "e.json", "--settings", "{oops"], "--settings: invalid JSON at column 2"),
        (["f.py", "--event", "e.json", "--settings", "[1]"], "--settings must be a JSON object"),
        (["f.py", "--event", "e.json", "--timeout", "0"], "--timeout"),
    ],
)
def test_usage_errors_exit_two_and_name_the_problem(tmp_path: Path, args: list[str], message: str) -> None:
    write(tmp_path / "f.py", "def on_track(e, s):\n    return e\n")
    write(tmp_path / "e.json", {"type": "track", "event": "E"})
    write(tmp_path / "bad.json", '{"type": "track",\n  "event": }')
    write(tmp_path / "list.json", [{"type": "track"}])
    result = sluice("fn", "test", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.fixture
def made_js(tmp_path: Path) -> Path:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")
    result = sluice("fn", "new", "enrich-js", "--lang", "js", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "function.js" in result.stdout
    return tmp_path / "enrich-js"


@pytest.mark.parametrize("fixture", ["track", "identify", "page", "screen", "group", "alias", "delete"])
def test_the_javascript_template_passes_every_event_type_through(made_js: Path, fixture: str) -> None:
    assert tomllib.loads((made_js / "function.toml").read_text())["language"] == "javascript"
    assert not (made_js / "function.py").exists()
    result = sluice("fn", "test", str(made_js), "--event", str(FIXTURES / f"{fixture}.json"), "--json", cwd=made_js)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "ok" and out["event"] == json.loads((FIXTURES / f"{fixture}.json").read_text())


def test_fn_test_runs_a_segment_style_js_file(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        skip_or_fail("Node.js is not installed")
    handler = write(
        tmp_path / "handler.js",
        "async function onTrack(event, settings) {\n"
        "  if (!event.properties.email) throw new ValidationError('email is required')\n"
        "  event.properties.domain = _.last(event.properties.email.split('@'))\n"
        "  console.log('domain', event.properties.domain)\n"
        "  return event\n"
        "}\n",
    )
    good = write(tmp_path / "good.json", {"type": "track", "event": "x", "properties": {"email": "a@b.io"}})
    result = sluice("fn", "test", str(handler), "--event", str(good), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["event"]["properties"]["domain"] == "b.io" and out["logs"] and "domain b.io" in out["logs"][0]
    bad = write(tmp_path / "bad.json", {"type": "track", "event": "x", "properties": {}})
    result = sluice("fn", "test", str(handler), "--event", str(bad), "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "message_rejected"
    broken = write(tmp_path / "broken.js", "async function onTrack(event) {\n  return event\n")
    result = sluice("fn", "test", str(broken), "--event", str(good), "--json", cwd=tmp_path)
    assert result.returncode == 1  # as for Python: the code does not load
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "FunctionSyntaxError" and "broken.js, line 3" in error["message"]
