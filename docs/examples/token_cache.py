"""Forward track events to an API that wants an OAuth2 access token, fetched once per worker.

Settings: tokenUrl, apiUrl, clientId (STRING); clientSecret (STRING, secret).
"""

from sluice.fn import FetchError, RetryError, cache, fetch

TOKEN_TTL_MS = 50 * 60 * 1000  # the provider's tokens live 60 minutes; renew a little early


async def new_token(settings):
    try:
        resp = await fetch(
            settings["tokenUrl"],
            method="POST",
            json={
                "grant_type": "client_credentials",
                "client_id": settings["clientId"],
                "client_secret": settings["clientSecret"],
            },
        )
    except FetchError as err:
        raise RetryError(str(err)) from err
    if not resp.ok:
        raise RetryError(f"token endpoint answered HTTP {resp.status}")
    return (await resp.json())["access_token"]


async def on_track(event, settings):
    # Concurrent invocations that miss the cache share one call of new_token; a failed
    # call is not cached.
    token = await cache.load("access_token", TOKEN_TTL_MS, lambda: new_token(settings))
    try:
        resp = await fetch(
            settings["apiUrl"],
            method="POST",
            headers={"Authorization": f"Bearer {token}"},
            json={"event": event["event"], "userId": event.get("userId")},
        )
    except FetchError as err:
        raise RetryError(str(err)) from err
    if resp.status == 401:  # revoked or expired early: forget it; the retry fetches a new one
        cache.delete("access_token")
        raise RetryError("access token was rejected")
    if resp.status == 429 or resp.status >= 500:
        raise RetryError(f"HTTP {resp.status}")
    return event
