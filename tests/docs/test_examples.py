"""The examples of docs/functions.md run, through the real isolated runtime, and do what the guide says.

Each file in docs/examples/ is quoted in the guide under an ``<!-- example: NAME -->`` marker;
the first tests check that the quotes and the files are identical. The others run every example
function with :func:`sluice.testing.arun_function` on suitable events: examples that call an API
are pointed (through a setting) at a real HTTP server on 127.0.0.1, or answered by ``MockResponse``
where the example keeps Segment's hard-coded URL.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sluice.functions.manifest import parse_manifest
from sluice.functions.pool import FunctionSource, WorkerPool
from sluice.testing import FunctionRun, MockResponse, arun_function
from tests.conftest import HttpServer

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
GUIDE = DOCS / "functions.md"
FIXTURES = ROOT / "tests" / "fixtures" / "events"

MARKER = re.compile(r"<!-- example: (?P<name>[\w.-]+) -->")
FENCED = re.compile(r"```[\w-]*\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)

#: Every example function, and so every one this module runs. A new example must be added here
#: (and get a test) or ``test_every_example_function_is_run`` fails.
FUNCTIONS = {
    "batch_filter.py",
    "batch_split_by_type.py",
    "drop_internal.py",
    "enrich_with_api.py",
    "log_user_id.py",
    "mask_pii.py",
    "segment_errors.py",
    "segment_on_track.py",
    "segment_token_cache.py",
    "token_cache.py",
    "user_journey.py",
    "validate_email.py",
}
USER_TESTS = {"test_enrich_with_api.py"}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def example(name: str, tmp_path: Path) -> Path:
    """The example as ``sluice fn new`` lays it out when it has a function.toml, else the bare file."""
    source = EXAMPLES / name
    manifest = source.with_suffix(".toml")
    if not manifest.exists():
        return source
    folder = tmp_path / source.stem
    folder.mkdir()
    shutil.copy(source, folder / "function.py")
    shutil.copy(manifest, folder / "function.toml")
    return folder


def guide_blocks() -> list[tuple[str, str]]:
    """(file name, code block) for every marker in the guide; the block must follow it directly."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = []
    for marker in MARKER.finditer(text):
        rest = text[marker.end() :]
        assert rest.startswith("\n```"), f"the code block must directly follow {marker.group(0)}"
        block = FENCED.match(rest, 1)
        assert block is not None, f"unterminated code block after {marker.group(0)}"
        blocks.append((marker.group("name"), block.group("body")))
    return blocks


# --- the guide quotes the files exactly ----------------------------------------------------------


def test_guide_code_blocks_equal_the_example_files() -> None:
    blocks = guide_blocks()
    assert len(blocks) >= len(FUNCTIONS)
    for name, body in blocks:
        path = EXAMPLES / name
        assert path.is_file(), f"the guide quotes {name}, which is not in docs/examples/"
        assert body == path.read_text(encoding="utf-8"), f"the guide's {name} differs from docs/examples/{name}"


def test_every_example_file_is_quoted_in_the_guide() -> None:
    quoted = {name for name, _ in guide_blocks()}
    on_disk = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".toml")}
    assert on_disk - quoted == set()


def test_every_example_function_is_run() -> None:
    on_disk = {p.name for p in EXAMPLES.glob("*.py")}
    assert on_disk == FUNCTIONS | USER_TESTS


def test_example_manifests_are_valid() -> None:
    for path in EXAMPLES.glob("*.toml"):
        manifest = parse_manifest(tomllib.loads(path.read_text()), path.name)
        assert manifest.language == "python"
        assert path.with_suffix(".py").is_file()


def guide_json(kind: str) -> dict[str, Any]:
    """The ``fn test --json`` sample of the guide marked ``<!-- json-shape: KIND -->``."""
    text = GUIDE.read_text(encoding="utf-8")
    marker = f"<!-- json-shape: {kind} -->\n"
    assert marker in text
    block = FENCED.match(text, text.index(marker) + len(marker))
    assert block is not None
    sample: dict[str, Any] = json.loads(block.group("body"))
    return sample


REQUEST_KEYS = {
    "method",
    "url",
    "requestHeaders",
    "requestBody",
    "status",
    "responseHeaders",
    "responseBody",
    "durationMs",
}


def test_the_guides_json_samples_have_the_documented_keys() -> None:
    event = guide_json("event")
    assert list(event) == ["status", "event", "error", "logs", "requests", "durationMs"]
    assert list(event["error"]) == ["type", "message"]
    assert set(event["requests"][0]) == REQUEST_KEYS
    batch = guide_json("batch")
    assert list(batch) == ["status", "error", "results", "logs", "requests", "durationMs"]
    assert all(list(r) == ["status", "event", "error"] for r in batch["results"])


def sluice(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The real command line, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sluice", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_cli_event_json_is_shaped_as_the_guide_says(http_server: HttpServer, tmp_path: Path) -> None:
    http_server.route("/v1/users/AiUGstSDIg", 503, {"error": "unavailable"})
    settings = json.dumps({"apiUrl": http_server.url + "/v1", "apiKey": API_KEY})
    event = write_json(tmp_path / "track.json", fixture("track"))
    proc = sluice(
        "fn", "test", example("enrich_with_api.py", tmp_path), "--event", event, "--settings", settings, "--json"
    )
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    sample = guide_json("event")
    assert list(out) == list(sample)
    assert (out["status"], out["error"]) == (sample["status"], sample["error"])
    assert set(out["requests"][0]) == set(sample["requests"][0])
    assert out["requests"][0]["requestHeaders"]["Authorization"] == "[REDACTED]"
    assert API_KEY not in proc.stdout


def test_cli_batch_json_is_shaped_as_the_guide_says(http_server: HttpServer, tmp_path: Path) -> None:
    http_server.route("/lookup", 200, {"tiers": {}})
    batch = write_json(tmp_path / "batch.json", mixed_batch())
    settings = write_json(tmp_path / "settings.json", {"lookupUrl": http_server.url + "/lookup"})
    proc = sluice(
        "fn", "test", EXAMPLES / "batch_split_by_type.py", "--batch", batch, "--settings", f"@{settings}", "--json"
    )
    assert proc.returncode == 1, proc.stderr  # one identify is message_rejected
    out = json.loads(proc.stdout)
    sample = guide_json("batch")
    assert list(out) == list(sample)
    assert [list(r) for r in out["results"]] == [["status", "event", "error"]] * 5
    assert [r["status"] for r in out["results"]] == ["ok", "ok", "message_rejected", "ok", "ok"]
    assert out["results"][2]["error"] == sample["results"][1]["error"]


@pytest.mark.parametrize(
    ("settings", "code", "status"),
    [
        ({"internalDomains": ["example.com"]}, 0, "dropped"),
        ({"internalDomains": []}, 0, "ok"),
        ({"internalDomains": 5}, 1, "bad_request"),  # a bare file: settings are not checked
    ],
)
def test_cli_exit_codes(tmp_path: Path, settings: dict[str, Any], code: int, status: str) -> None:
    event = write_json(tmp_path / "identify.json", fixture("identify"))
    proc = sluice(
        "fn", "test", EXAMPLES / "drop_internal.py", "--event", event, "--settings", json.dumps(settings), "--json"
    )
    assert proc.returncode == code, proc.stderr
    assert json.loads(proc.stdout)["status"] == status


def test_cli_a_function_that_does_not_load_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import requests\n\ndef on_track(event, settings):\n    return event\n")
    event = write_json(tmp_path / "track.json", fixture("track"))
    proc = sluice("fn", "test", tmp_path / "bad.py", "--event", event, "--json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["status"] == "bad_request"
    assert out["error"]["type"] == "ForbiddenImportError"
    assert "line 1: import of 'requests' is not allowed" in out["error"]["message"]


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    event = write_json(tmp_path / "track.json", fixture("track"))
    array = write_json(tmp_path / "array.json", [fixture("track")])
    (tmp_path / "broken.json").write_text("{")
    function = EXAMPLES / "log_user_id.py"
    for args in [
        (function,),
        (function, "--event", event, "--batch", array),
        (function, "--event", tmp_path / "missing.json"),
        (function, "--event", tmp_path / "broken.json"),
        (function, "--event", array),
        (tmp_path / "no_such_function", "--event", event),
    ]:
        proc = sluice("fn", "test", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)


def test_cli_fn_new_makes_a_function_that_runs(tmp_path: Path) -> None:
    proc = sluice("fn", "new", "my_function", "--dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "my_function"
    assert sorted(p.name for p in folder.iterdir()) == ["function.py", "function.toml"]
    assert sluice("fn", "new", "my_function", "--dir", tmp_path).returncode == 2  # never overwrites
    for name in ("track", "identify", "page", "screen", "group", "alias", "delete"):
        event = write_json(tmp_path / f"{name}.json", fixture(name))
        proc = sluice("fn", "test", folder, "--event", event, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["event"] == fixture(name)


async def test_to_dict_has_the_documented_keys() -> None:
    track = fixture("track")
    mocks = [MockResponse("https://example-service.com/api", method="POST")]
    single = await arun_function(EXAMPLES / "segment_on_track.py", track, mocks=mocks)
    assert list(single.to_dict()) == ["status", "event", "error", "logs", "requests", "durationMs"]
    assert set(single.requests[0]) == {
        "method",
        "url",
        "requestHeaders",
        "requestBody",
        "status",
        "responseHeaders",
        "responseBody",
        "durationMs",
    }
    batch = await arun_function(EXAMPLES / "segment_on_track.py", batch=[track], mocks=mocks)
    assert list(batch.to_dict()) == ["status", "error", "results", "logs", "requests", "durationMs"]
    assert batch.results is not None
    assert list(batch.results[0]) == ["status", "event", "error"]


def test_the_example_user_test_file_passes() -> None:
    """docs/examples/test_enrich_with_api.py is what a user runs with pytest: it must pass."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "test_enrich_with_api.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


# --- enrich_with_api.py -------------------------------------------------------------------------

API_KEY = "sk_test_4eC39HqLyjWD"


def line_of(name: str, text: str) -> int:
    """The 1-based line of ``text`` in an example (errors name the line of the user's code)."""
    lines = (EXAMPLES / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


RAISE_LINE = line_of("enrich_with_api.py", "raise RuntimeError")


async def test_enrich_adds_the_tier_and_redacts_the_key(http_server: HttpServer, tmp_path: Path) -> None:
    http_server.route("/v1/users/AiUGstSDIg", 200, {"tier": "gold"})
    settings = {"apiUrl": http_server.url + "/v1", "apiKey": API_KEY}
    track = fixture("track")
    run = await arun_function(example("enrich_with_api.py", tmp_path), track, settings=settings)
    assert run.status == "ok", run.error
    assert run.event["properties"] == {"title": "Intro to Analytics", "tier": "gold"}
    (received,) = http_server.requests
    assert (received.method, received.path) == ("GET", "/v1/users/AiUGstSDIg")
    assert received.headers["Authorization"] == f"Bearer {API_KEY}"
    (trace,) = run.requests
    assert trace["status"] == 200
    assert trace["requestHeaders"]["Authorization"] == "[REDACTED]"
    assert API_KEY not in json.dumps(run.to_dict())


async def test_enrich_identify(http_server: HttpServer, tmp_path: Path) -> None:
    http_server.route("/users/97980cfea0067", 200, {"tier": "silver"})
    settings = {"apiUrl": http_server.url, "apiKey": API_KEY}
    run = await arun_function(example("enrich_with_api.py", tmp_path), fixture("identify"), settings=settings)
    assert run.status == "ok", run.error
    assert run.event["traits"]["tier"] == "silver"


@pytest.mark.parametrize(
    ("status", "outcome", "error"),
    [
        (404, "ok", None),
        (429, "retry", {"type": "RetryError", "message": "CRM answered HTTP 429"}),
        (503, "retry", {"type": "RetryError", "message": "CRM answered HTTP 503"}),
        (401, "bad_request", {"type": "RuntimeError", "message": f"CRM answered HTTP 401 (line {RAISE_LINE})"}),
    ],
)
async def test_enrich_answers(
    http_server: HttpServer, tmp_path: Path, status: int, outcome: str, error: dict[str, str] | None
) -> None:
    http_server.route("/users/AiUGstSDIg", status, {"error": "nope"})
    track = fixture("track")
    settings = {"apiUrl": http_server.url, "apiKey": API_KEY}
    run = await arun_function(example("enrich_with_api.py", tmp_path), track, settings=settings)
    assert (run.status, run.error) == (outcome, error)
    if outcome == "ok":
        assert run.event == track
        assert run.logs == ["INFO: no CRM record for AiUGstSDIg"]


async def test_enrich_network_failure_is_retried(tmp_path: Path) -> None:
    settings = {"apiUrl": "http://127.0.0.1:9", "apiKey": API_KEY}
    run = await arun_function(example("enrich_with_api.py", tmp_path), fixture("track"), settings=settings)
    assert run.status == "retry"
    assert run.error is not None and "failed" in run.error["message"]
    assert run.requests[0]["status"] is None


async def test_enrich_anonymous_events_pass_without_a_request(http_server: HttpServer, tmp_path: Path) -> None:
    track = fixture("track")
    del track["userId"]
    settings = {"apiUrl": http_server.url, "apiKey": API_KEY}
    run = await arun_function(example("enrich_with_api.py", tmp_path), track, settings=settings)
    assert (run.status, run.event, run.requests) == ("ok", track, [])
    assert http_server.requests == []


async def test_enrich_settings_follow_the_manifest(tmp_path: Path) -> None:
    run = await arun_function(example("enrich_with_api.py", tmp_path), fixture("track"), settings={"apiUrl": "x"})
    assert run.status == "invalid_settings"
    assert run.error == {"type": "InvalidSettings", "message": "setting 'apiKey' (API Key) is required"}


async def test_enrich_rejects_unknown_settings(tmp_path: Path) -> None:
    settings = {"apiUrl": "x", "apiKey": API_KEY, "apikey": "typo"}
    run = await arun_function(example("enrich_with_api.py", tmp_path), fixture("track"), settings=settings)
    assert run.status == "invalid_settings"
    assert run.error is not None and "setting 'apikey' is not defined" in run.error["message"]


# --- drop_internal.py ---------------------------------------------------------------------------

INTERNAL = {"internalDomains": ["Example.com"], "dropTestEvents": True}


async def test_drop_internal_drops_internal_users() -> None:
    run = await arun_function(EXAMPLES / "drop_internal.py", fixture("identify"), settings=INTERNAL)
    assert run.status == "dropped"
    assert run.error == {"type": "DropEvent", "message": "internal user (example.com)"}
    track = fixture("track")
    track["context"]["traits"]["email"] = "ops@EXAMPLE.com"
    run = await arun_function(EXAMPLES / "drop_internal.py", track, settings=INTERNAL)
    assert run.status == "dropped"


@pytest.mark.parametrize(("drop_tests", "status"), [(True, "filtered"), (False, "ok")])
async def test_drop_internal_filters_test_events(drop_tests: bool, status: str) -> None:
    track = fixture("track")
    track["properties"]["test"] = True
    settings = {"internalDomains": ["example.com"], "dropTestEvents": drop_tests}
    run = await arun_function(EXAMPLES / "drop_internal.py", track, settings=settings)
    assert run.status == status
    assert run.error is None
    assert run.event == (track if status == "ok" else None)


async def test_drop_internal_aliases_and_unsupported_types() -> None:
    page = fixture("page")
    run = await arun_function(EXAMPLES / "drop_internal.py", page, settings=INTERNAL)
    assert (run.status, run.event) == ("ok", page)
    run = await arun_function(EXAMPLES / "drop_internal.py", fixture("group"), settings=INTERNAL)
    assert run.status == "unsupported_event_type"
    assert run.error == {"type": "EventNotSupported", "message": "the function defines no on_group"}


# --- validate_email.py --------------------------------------------------------------------------


def identify(**traits: Any) -> dict[str, Any]:
    event = fixture("identify")
    event["traits"] = traits
    return event


@pytest.mark.parametrize(
    ("traits", "settings", "expected"),
    [
        ({"email": " Peter@Example.COM", "phone": "(650) 253-0000"}, {}, {"email": "peter@example.com", "phone": "+16502530000"}),
        ({"email": "p@example.co.uk", "phone": "020 7946 0958"}, {"defaultRegion": "GB"}, {"email": "p@example.co.uk", "phone": "+442079460958"}),
        ({"email": "p@example.com", "name": "P"}, {}, {"email": "p@example.com", "name": "P"}),
    ],
)  # fmt: skip
async def test_validate_email_normalises(traits: dict[str, str], settings: dict[str, str], expected: Any) -> None:
    run = await arun_function(EXAMPLES / "validate_email.py", identify(**traits), settings=settings)
    assert run.status == "ok", run.error
    assert run.event["traits"] == expected
    assert run.logs == []


async def test_validate_email_removes_invalid_phones_and_logs_it() -> None:
    run = await arun_function(EXAMPLES / "validate_email.py", identify(email="a@b.io", phone="123"))
    assert run.status == "ok"
    assert run.event["traits"] == {"email": "a@b.io"}
    assert run.logs == ["WARNING: removed a phone number that is not valid"]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (identify(name="no email"), ("ValidationError", "traits.email is missing or not an email address")),
        (identify(email="not-an-address"), ("ValidationError", "traits.email is missing or not an email address")),
        ({**identify(), "traits": "oops"}, ("InvalidEventPayload", "traits must be an object")),
    ],
)
async def test_validate_email_rejects(event: dict[str, Any], error: tuple[str, str]) -> None:
    run = await arun_function(EXAMPLES / "validate_email.py", event)
    assert run.status == "message_rejected"
    assert run.error == {"type": error[0], "message": error[1]}


async def test_validate_email_has_no_track_handler() -> None:
    run = await arun_function(EXAMPLES / "validate_email.py", fixture("track"))
    assert run.status == "unsupported_event_type"


# --- mask_pii.py --------------------------------------------------------------------------------

SALT = "pepper-7f3a9c"


def keyed(value: str) -> str:
    return hmac.new(SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


async def test_mask_pii_track(tmp_path: Path) -> None:
    track = fixture("track")
    track["properties"] = {"email": " Ann@Example.com ", "plan_name": "pro", "title": "t"}
    settings = {"salt": SALT, "renames": {"plan_name": "plan", "missing": "x"}, "hashUserId": True}
    run = await arun_function(example("mask_pii.py", tmp_path), track, settings=settings)
    assert run.status == "ok", run.error
    assert run.event["properties"] == {"email": keyed("ann@example.com"), "plan": "pro", "title": "t"}
    assert run.event["userId"] == keyed("AiUGstSDIg")


async def test_mask_pii_identify_keeps_user_id_unless_asked(tmp_path: Path) -> None:
    run = await arun_function(example("mask_pii.py", tmp_path), fixture("identify"), settings={"salt": SALT})
    assert run.status == "ok", run.error
    assert run.event["traits"]["email"] == keyed("peter@example.com")
    assert run.event["userId"] == "97980cfea0067"


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({}, "setting 'salt' (Salt) is required"),
        ({"salt": ""}, "setting 'salt' (Salt) is required"),
        ({"salt": SALT, "renames": ["a", "b"]}, "setting 'renames' must be an object mapping strings to strings"),
        ({"salt": SALT, "hashUserId": "yes"}, "setting 'hashUserId' must be true or false"),
    ],
)
async def test_mask_pii_invalid_settings(tmp_path: Path, settings: dict[str, Any], problem: str) -> None:
    run = await arun_function(example("mask_pii.py", tmp_path), fixture("track"), settings=settings)
    assert run.status == "invalid_settings"
    assert run.error is not None and problem in run.error["message"]


# --- token_cache.py -----------------------------------------------------------------------------


def token_settings(server: HttpServer) -> dict[str, str]:
    return {
        "tokenUrl": server.url + "/oauth/token",
        "apiUrl": server.url + "/collect",
        "clientId": "client-1",
        "clientSecret": "cs_live_81f2",
    }


def tracks(n: int) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        event = fixture("track")
        event["messageId"] = f"m{i}"
        events.append(event)
    return events


async def test_token_cache_fetches_one_token_for_concurrent_events(http_server: HttpServer) -> None:
    http_server.route("/oauth/token", 200, {"access_token": "tok-1", "expires_in": 3600})
    http_server.route("/collect", 202, {})
    # A batch to a function without on_batch runs each event's handler in one worker, overlapping.
    run = await arun_function(EXAMPLES / "token_cache.py", batch=tracks(3), settings=token_settings(http_server))
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "ok", "ok"]
    paths = [r.path for r in http_server.requests]
    assert sorted(paths) == ["/collect", "/collect", "/collect", "/oauth/token"]
    token_request = http_server.requests[paths.index("/oauth/token")]
    assert token_request.json() == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": "cs_live_81f2",
    }
    for received in http_server.requests:
        if received.path == "/collect":
            assert received.headers["Authorization"] == "Bearer tok-1"
            assert received.json() == {"event": "Button Clicked", "userId": "AiUGstSDIg"}


async def test_token_cache_token_endpoint_failure_is_retried(http_server: HttpServer) -> None:
    http_server.route("/oauth/token", 500, {})
    run = await arun_function(EXAMPLES / "token_cache.py", tracks(1)[0], settings=token_settings(http_server))
    assert (run.status, run.error) == ("retry", {"type": "RetryError", "message": "token endpoint answered HTTP 500"})


async def test_token_cache_forgets_a_rejected_token(http_server: HttpServer) -> None:
    http_server.route("/oauth/token", 200, {"access_token": "tok-1"})
    http_server.route("/collect", 401, {})
    source = FunctionSource((EXAMPLES / "token_cache.py").read_text(), "token_cache.py")
    async with WorkerPool(source, token_settings(http_server)) as pool:  # one instance, kept between runs
        (first,) = await pool.run_events(tracks(1))
        assert (first["status"], first["error"]["message"]) == ("retry", "access token was rejected")
        http_server.route("/collect", 200, {})
        (second,) = await pool.run_events(tracks(1))
        assert second["status"] == "ok"
        (third,) = await pool.run_events(tracks(1))
        assert third["status"] == "ok"
    paths = [r.path for r in http_server.requests]
    assert paths == ["/oauth/token", "/collect", "/oauth/token", "/collect", "/collect"]


# --- batch_split_by_type.py ---------------------------------------------------------------------


def mixed_batch() -> list[dict[str, Any]]:
    first = fixture("identify")
    second, fourth = tracks(2)
    fourth["userId"] = "anna"
    third = fixture("identify")
    third["messageId"] = "no-email"
    del third["traits"]["email"]
    return [first, second, third, fixture("page"), fourth]


async def test_batch_split_by_type(http_server: HttpServer) -> None:
    http_server.route("/lookup", 200, {"tiers": {"AiUGstSDIg": "gold"}})
    batch = mixed_batch()
    run = await arun_function(
        EXAMPLES / "batch_split_by_type.py", batch=batch, settings={"lookupUrl": http_server.url + "/lookup"}
    )
    assert run.status == "ok", run.error
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "ok", "message_rejected", "ok", "ok"]
    assert run.results[2]["error"] == {"type": "ValidationError", "message": "identify without traits.email"}
    assert run.results[0]["event"] == batch[0]
    assert run.results[1]["event"]["properties"]["tier"] == "gold"
    assert run.results[4]["event"]["properties"]["tier"] is None
    assert run.results[3]["event"] == batch[3]
    (lookup,) = http_server.requests  # one request for the whole batch
    assert lookup.json() == {"userIds": ["AiUGstSDIg", "anna"]}
    assert len(run.requests) == 1


@pytest.mark.parametrize(("url", "message"), [("/lookup", "lookup answered HTTP 503"), (None, "failed")])
async def test_batch_split_by_type_retries_the_whole_batch(
    http_server: HttpServer, url: str | None, message: str
) -> None:
    http_server.route("/lookup", 503, {})
    lookup = http_server.url + url if url else "http://127.0.0.1:9/lookup"
    run = await arun_function(EXAMPLES / "batch_split_by_type.py", batch=mixed_batch(), settings={"lookupUrl": lookup})
    assert run.status == "retry"
    assert run.error is not None and message in run.error["message"]
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["retry"] * 5


async def test_batch_split_by_type_single_event_handlers(http_server: HttpServer) -> None:
    http_server.route("/lookup", 200, {"tiers": {"AiUGstSDIg": "gold"}})
    settings = {"lookupUrl": http_server.url + "/lookup"}
    run = await arun_function(EXAMPLES / "batch_split_by_type.py", fixture("track"), settings=settings)
    assert run.status == "ok"
    assert run.event["properties"]["tier"] == "gold"
    run = await arun_function(EXAMPLES / "batch_split_by_type.py", mixed_batch()[2], settings=settings)
    assert (run.status, run.error) == (
        "message_rejected",
        {"type": "ValidationError", "message": "identify without traits.email"},
    )


# --- batch_filter.py ----------------------------------------------------------------------------


async def test_batch_filter_pairs_a_shorter_list_by_message_id() -> None:
    batch = tracks(3)
    batch[0]["properties"] = {"name": "keep"}
    batch[1]["properties"] = {"name": "drop"}
    run = await arun_function(EXAMPLES / "batch_filter.py", batch=batch)
    assert run.status == "ok"
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "filtered", "ok"]
    assert run.results[0]["event"]["properties"] == {"name": "keep", "message": "Enriched from insert function"}
    assert run.results[2]["event"]["messageId"] == "m2"


async def test_batch_filter_failure_retries_the_batch() -> None:
    batch = tracks(2)
    del batch[1]["properties"]
    run = await arun_function(EXAMPLES / "batch_filter.py", batch=batch)
    assert (run.status, run.error) == ("retry", {"type": "RetryError", "message": "Failed function"})
    assert run.logs == ["'properties'"]
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["retry", "retry"]


async def test_batch_filter_single_handler() -> None:
    event = tracks(1)[0]
    event["properties"] = {"name": "drop"}
    run = await arun_function(EXAMPLES / "batch_filter.py", event)
    assert run.status == "filtered"


# --- the Segment ports --------------------------------------------------------------------------


async def test_segment_on_track_posts_the_event() -> None:
    track = fixture("track")
    mocks = [MockResponse("https://example-service.com/api", method="POST", json={"ok": True})]
    run = await arun_function(EXAMPLES / "segment_on_track.py", track, mocks=mocks)
    assert (run.status, run.event) == ("ok", track)
    (request,) = run.requests
    assert (request["method"], request["url"], request["status"]) == ("POST", "https://example-service.com/api", 200)
    assert request["requestHeaders"] == {"Content-Type": "application/json"}
    assert json.loads(request["requestBody"]) == {
        "event_name": "Button Clicked",
        "event_properties": {"title": "Intro to Analytics"},
        "timestamp": "2015-12-12T19:11:01.249Z",
    }


@pytest.mark.parametrize(
    ("mock", "status", "message"),
    [
        (MockResponse("http://example-service.com/api", status=200), "ok", None),
        (MockResponse("http://example-service.com/api", status=404), "ok", None),
        (MockResponse("http://example-service.com/api", status=429), "retry", "HTTP Status 429"),
        (MockResponse("http://example-service.com/api", status=502), "retry", "HTTP Status 502"),
        (MockResponse("http://example-service.com/api", error="connection reset"), "retry", "connection reset"),
    ],
)
async def test_segment_errors_track(mock: MockResponse, status: str, message: str | None) -> None:
    track = fixture("track")
    run = await arun_function(EXAMPLES / "segment_errors.py", track, mocks=[mock])
    assert run.status == status
    if message is None:
        assert (run.event, run.error) == (track, None)
    else:
        assert run.error == {"type": "RetryError", "message": message}
    assert json.loads(run.requests[0]["requestBody"]) == {"event": track}


def with_(name: str, key: str, value: dict[str, Any]) -> dict[str, Any]:
    event = fixture(name)
    event[key] = value
    return event


@pytest.mark.parametrize(
    ("event", "status", "error"),
    [
        (with_("group", "traits", {}), "message_rejected", ("InvalidEventPayload", "Company name is required")),
        (with_("group", "traits", {"company": "Initech"}), "ok", None),
        (with_("page", "properties", {}), "message_rejected", ("ValidationError", "Page name is required")),
        (with_("page", "properties", {"pageName": "Home"}), "ok", None),
        (fixture("alias"), "unsupported_event_type", ("EventNotSupported", "Alias event is not supported")),
        (with_("identify", "traits", {"companyName": "Initech"}), "dropped", ("DropEvent", "Company name is required")),
        (fixture("identify"), "ok", None),
        (fixture("screen"), "unsupported_event_type", ("EventNotSupported", "the function defines no on_screen")),
    ],
)
async def test_segment_errors_other_types(event: dict[str, Any], status: str, error: tuple[str, str] | None) -> None:
    run = await arun_function(EXAMPLES / "segment_errors.py", copy.deepcopy(event))
    assert run.status == status
    if error is None:
        assert (run.event, run.error) == (event, None)
    else:
        assert run.error == {"type": error[0], "message": error[1]}


TOKEN_MOCKS = [
    MockResponse("https://example.com/tokens", method="POST", json={"token": "t-1"}),
    MockResponse("https://example.com/track", method="POST", status=204),
]


async def test_segment_token_cache() -> None:
    run = await arun_function(EXAMPLES / "segment_token_cache.py", fixture("track"), mocks=TOKEN_MOCKS)
    assert run.status == "ok", run.error
    assert [r["url"] for r in run.requests] == ["https://example.com/tokens", "https://example.com/track"]
    assert run.requests[1]["requestHeaders"] == {"Authorization": "[REDACTED]"}
    assert run.requests[1]["requestBody"] == "Button Clicked"


async def test_segment_token_cache_keeps_the_token_between_invocations() -> None:
    source = FunctionSource((EXAMPLES / "segment_token_cache.py").read_text(), "segment_token_cache.py")
    async with WorkerPool(source, mocks=[m.wire() for m in TOKEN_MOCKS]) as pool:
        (first,) = await pool.run_events(tracks(1))
        (second,) = await pool.run_events(tracks(1))
    assert [r["url"] for r in first["requests"]] == ["https://example.com/tokens", "https://example.com/track"]
    assert [r["url"] for r in second["requests"]] == ["https://example.com/track"]


# --- log_user_id.py -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "status", "logs"),
    [
        ("AiUGstSDIg", "ok", ["User ID is AiUGstSDIg", "User ID is valid"]),
        ("short", "message_rejected", ["User ID is short"]),
        (None, "message_rejected", ["User ID is None"]),
    ],
)
async def test_log_user_id(user_id: str | None, status: str, logs: list[str]) -> None:
    track = fixture("track")
    track["userId"] = user_id
    run: FunctionRun = await arun_function(EXAMPLES / "log_user_id.py", track)
    assert (run.status, run.logs) == (status, logs)
    if status != "ok":
        assert run.error == {"type": "ValidationError", "message": "User ID is invalid"}


# --- user_journey.py ----------------------------------------------------------------------------


async def test_user_journey_numbers_events_and_keeps_the_first_timestamp() -> None:
    data: dict[str, Any] = {}
    track = fixture("track")
    first = await arun_function(EXAMPLES / "user_journey.py", track, store=data)
    assert first.status == "ok"
    assert first.event["properties"] == {
        "title": "Intro to Analytics",
        "eventNumber": 1,
        "firstSeen": "2015-12-12T19:11:01.249Z",
    }
    later = dict(track, timestamp="2016-01-01T00:00:00.000Z")
    second = await arun_function(EXAMPLES / "user_journey.py", later, store=data)
    assert second.event["properties"]["eventNumber"] == 2
    assert second.event["properties"]["firstSeen"] == "2015-12-12T19:11:01.249Z"
    assert data == {f"journey:{track['userId']}": {"firstSeen": "2015-12-12T19:11:01.249Z", "events": 2}}


async def test_user_journey_passes_events_without_a_user_and_retries_when_the_store_fails() -> None:
    track = fixture("track")
    track.pop("userId", None)
    track.pop("anonymousId", None)
    run = await arun_function(EXAMPLES / "user_journey.py", track)
    assert run.status == "ok" and "eventNumber" not in run.event["properties"]
    # a value the store refuses (a key over 256 characters) is a StoreError: the example retries
    run = await arun_function(EXAMPLES / "user_journey.py", dict(fixture("track"), userId="u" * 300))
    assert run.status == "retry"
    assert run.error is not None and "over the 256 character limit" in run.error["message"]
