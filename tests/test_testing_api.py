"""sluice.testing: what users call from their own pytest suites (synchronous form, folders)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.errors import ForbiddenImportError
from sluice.testing import MockResponse, run_function


def test_run_function_on_a_fn_new_folder_applies_its_schema(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "sluice", "fn", "new", "crm"], cwd=tmp_path, check=True, capture_output=True)
    folder = tmp_path / "crm"
    (folder / "function.py").write_text(
        "async def on_identify(event, settings):\n"
        "    res = await fetch('https://crm.example.com/accounts/' + event['userId'],\n"
        "                      headers={'Authorization': 'Bearer ' + settings['apiKey']})\n"
        "    event['traits']['tier'] = (await res.json())['tier']\n"
        "    print('key', settings['apiKey'])\n"
        "    return event\n"
    )
    run = run_function(
        folder,
        event={"type": "identify", "userId": "u1", "traits": {}},
        settings={"apiKey": "secret-key-123"},
        mocks=[MockResponse("https://crm.example.com/accounts/*", json={"tier": "gold"})],
    )
    assert run.status == "ok" and run.successful
    assert run.event["traits"]["tier"] == "gold"
    assert run.logs == ["key [REDACTED]"]  # apiKey is sensitive in the template's function.toml
    assert run.requests[0]["requestHeaders"]["Authorization"] == "[REDACTED]"
    assert run.to_dict()["event"] == run.event


def test_run_function_batch_and_errors() -> None:
    code = "def on_track(e, s):\n    if e.get('bad'):\n        raise RetryError('later')\n    return e\n"
    run = run_function(code, batch=[{"type": "track"}, {"type": "track", "bad": True}])
    assert run.statuses == ["ok", "retry"]
    assert not run.successful
    with pytest.raises(ValueError, match="exactly one of event= or batch="):
        run_function(code)
    with pytest.raises(ForbiddenImportError, match="'requests'"):
        run_function("import requests\ndef on_track(e, s):\n    return e\n", event={"type": "track"})


def test_fn_services_outside_a_worker_say_where_they_work() -> None:
    import asyncio

    from sluice import fn

    with pytest.raises(RuntimeError, match="only work inside a function run by sluice"):
        asyncio.run(fn.fetch("http://127.0.0.1:9"))
