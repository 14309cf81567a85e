"""Keep internal and test traffic away from the destination.

Settings: internalDomains (ARRAY of email domains), dropTestEvents (BOOLEAN).
"""

from sluice.fn import DropEvent


def email_of(event):
    traits = event.get("traits") or event.get("context", {}).get("traits") or {}
    return str(traits.get("email") or "")


def keep_or_drop(event, settings):
    domain = email_of(event).rpartition("@")[2].lower()
    internal = {d.lower() for d in settings.get("internalDomains", [])}
    if domain and domain in internal:
        raise DropEvent(f"internal user ({domain})")  # outcome: dropped
    if settings.get("dropTestEvents") and event.get("properties", {}).get("test"):
        return None  # outcome: filtered
    return event


def on_track(event, settings):
    return keep_or_drop(event, settings)


def on_identify(event, settings):
    return keep_or_drop(event, settings)


# One function may serve several event types.
on_page = on_screen = on_track
