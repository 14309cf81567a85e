"""``sluice fn push|deploy|versions|restore``: functions on a running sluice, through its API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from sluice.cli.fn_cmd import CliUsage, fn_group
from sluice.cli.remote import ApiClient, RemoteError, find_function, profile_option, resolve_remote
from sluice.errors import UsageError
from sluice.functions.manifest import load_function


def _client(profile: str | None) -> ApiClient:
    return ApiClient(resolve_remote(profile))


def function_body(folder: Path) -> dict[str, Any]:
    """The API's function object from a ``sluice fn new`` folder (function.toml + function.py)."""
    if not folder.is_dir():
        raise CliUsage(
            f"{folder}: not a folder; push needs a folder made by 'sluice fn new' (function.py + function.toml)"
        )
    try:
        loaded = load_function(folder)
    except UsageError as exc:
        raise CliUsage(str(exc)) from None
    manifest = loaded.manifest
    assert manifest is not None  # a folder always has one
    return {
        "displayName": manifest.display_name,
        "description": manifest.description,
        "language": manifest.language,
        "resourceType": manifest.resource_type,
        "batchMaxCount": manifest.batch_max_count,
        "settings": [spec.to_dict() for spec in manifest.settings],
        "code": loaded.code,
    }


def _rejected(exc: RemoteError, folder: Path, filename: str) -> RemoteError:
    """A 422 on push: say which file the ``code`` errors are in."""
    if exc.status != 422:
        return exc
    errors = []
    for item in exc.errors:
        if item.get("field") == "code":
            item = {**item, "field": f"code ({folder / filename})"}
        errors.append(item)
    return RemoteError(f"the server rejected {folder}:", errors, 422)


@fn_group.command("push")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@profile_option
def fn_push(folder: Path, profile: str | None) -> None:
    """Create the function in FOLDER on the server, or update the one with the same displayName.

    Changed code or settings make a new version (the LATEST); running instances keep theirs until
    'sluice fn deploy'.
    """
    body = function_body(folder)
    filename = "function.py" if body["language"] == "python" else "function.js"
    with _client(profile) as client:
        functions: list[dict[str, Any]] = client.get("/functions")["functions"]
        same = [f for f in functions if f["displayName"] == body["displayName"]]
        if len(same) > 1:
            ids = ", ".join(f["id"] for f in same)
            raise RemoteError(f"{len(same)} functions are named {body['displayName']!r} ({ids}); rename one first")
        try:
            if same:
                before = same[0]
                after = client.patch(f"/functions/{before['id']}", body)["function"]
            else:
                before = None
                after = client.post("/functions", body)["function"]
        except RemoteError as exc:
            raise _rejected(exc, folder, filename) from None
    name, fid, version = after["displayName"], after["id"], after["version"]
    if before is None:
        click.echo(f"Created function {name!r}: id {fid}, version {version}")
    elif after["version"] != before["version"]:
        click.echo(f"Updated function {name!r}: id {fid}, new version {version} (was {before['version']})")
    else:
        click.echo(f"Function {name!r} unchanged: id {fid}, version {version}")
    if after["instancesCount"] and not after["isLatestVersion"]:
        click.echo(f"Instances still run an older version; deploy with: sluice fn deploy {fid}")


@fn_group.command("deploy")
@click.argument("name")
@click.option(
    "--instance", "instance_ids", multiple=True, metavar="ID", help="Deploy to this instance only (repeatable)."
)
@profile_option
def fn_deploy(name: str, instance_ids: Sequence[str], profile: str | None) -> None:
    """Move instances of function NAME (displayName or id) to its latest version (default: all)."""
    with _client(profile) as client:
        function = find_function(client, name)
        fid = function["id"]
        body = {"instanceIds": list(instance_ids)} if instance_ids else None
        deployed = client.post(f"/functions/{fid}/deploy", body)["deploy"]
        instances: list[dict[str, Any]] = client.get("/insert-function-instances", {"functionId": fid})["instances"]
    version = deployed["function"]["version"]
    moved = set(deployed["deployedInstanceIds"])
    if not moved:
        click.echo(f"{function['displayName']!r} ({fid}) has no instances to deploy to; nothing changed.")
        return
    click.echo(f"Deployed {function['displayName']!r} ({fid}) version {version} to {len(moved)} instance(s):")
    _table(
        ["INSTANCE", "NAME", "VERSION", ""],
        [
            [i["id"], i["name"], str(i["version"]), "deployed now" if i["id"] in moved else ""]
            for i in sorted(instances, key=lambda i: (i["id"] not in moved, i["name"], i["id"]))
        ],
    )


@fn_group.command("versions")
@click.argument("name")
@profile_option
def fn_versions(name: str, profile: str | None) -> None:
    """List the versions of function NAME (displayName or id), newest first."""
    with _client(profile) as client:
        function = find_function(client, name)
        versions: list[dict[str, Any]] = client.get(f"/functions/{function['id']}/versions")["versions"]
    numbers = {v["id"]: v["version"] for v in versions}
    rows = []
    for v in versions:
        labels = ",".join(v["labels"])
        if v.get("restoredFrom"):
            source = numbers.get(v["restoredFrom"])
            labels = (labels + " " if labels else "") + f"(restored from {source or v['restoredFrom']})"
        rows.append([str(v["version"]), v["id"], labels, v["author"], v["createdAt"]])
    _table(["VERSION", "ID", "LABELS", "AUTHOR", "CREATED"], rows)


@fn_group.command("restore")
@click.argument("name")
@click.argument("version")
@profile_option
def fn_restore(name: str, version: str, profile: str | None) -> None:
    """Make a copy of VERSION (a number or a version id) of function NAME its latest version.

    No instance changes until 'sluice fn deploy'.
    """
    with _client(profile) as client:
        function = find_function(client, name)
        fid = function["id"]
        versions: list[dict[str, Any]] = client.get(f"/functions/{fid}/versions")["versions"]
        if version.isdigit():
            found = [v for v in versions if v["version"] == int(version)]
        else:
            found = [v for v in versions if v["id"] == version]
        if not found:
            known = ", ".join(str(v["version"]) for v in reversed(versions))
            raise RemoteError(f"function {function['displayName']!r} has no version {version!r} (versions: {known})")
        restored = client.post(f"/functions/{fid}/versions", {"versionId": found[0]["id"]})["version"]
    click.echo(
        f"Restored version {found[0]['version']} of {function['displayName']!r} as new version "
        f"{restored['version']} ({restored['id']})"
    )
    click.echo(f"Instances are unchanged; deploy it with: sluice fn deploy {fid}")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
