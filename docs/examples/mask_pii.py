"""Pseudonymise personal data before it leaves: keyed hashes and renamed properties.

Settings (function.toml): salt (STRING, required, secret), renames (TEXT_MAP: old name ->
new name), hashUserId (BOOLEAN).
"""

import hashlib
import hmac


def pseudonym(value, settings):
    return hmac.new(settings["salt"].encode(), value.encode(), hashlib.sha256).hexdigest()


def on_track(event, settings):
    properties = event.setdefault("properties", {})
    for old, new in settings.get("renames", {}).items():
        if old in properties:
            properties[new] = properties.pop(old)
    if properties.get("email"):
        properties["email"] = pseudonym(str(properties["email"]).strip().lower(), settings)
    if settings.get("hashUserId") and event.get("userId"):
        event["userId"] = pseudonym(event["userId"], settings)
    return event


def on_identify(event, settings):
    traits = event.setdefault("traits", {})
    if traits.get("email"):
        traits["email"] = pseudonym(str(traits["email"]).strip().lower(), settings)
    if settings.get("hashUserId") and event.get("userId"):
        event["userId"] = pseudonym(event["userId"], settings)
    return event
