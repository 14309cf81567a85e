"""The web console (DESIGN §4.4): server-rendered pages served by ``sluice serve`` at ``/``.

It calls only the public control-plane API (in-process, with the signed-in user's token), so
anything the console can do, the API and the CLI can do too. Sessions live in the catalog
database (:mod:`sluice.catalog.sessions`), so every API process behind a load balancer shares
them and a restart signs nobody out; :mod:`sluice.console.session` has an in-memory twin for tests.
"""

from __future__ import annotations

from sluice.console.app import console_route, create_console

__all__ = ["console_route", "create_console"]
