"""Validate and normalise identify traits: a valid email is required, phones become E.164.

Settings: defaultRegion (STRING, optional, e.g. "GB"; "US" when not set).
"""

import re

import phonenumbers

from sluice.fn import InvalidEventPayload, ValidationError, log

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def on_identify(event, settings):
    traits = event.get("traits")
    if not isinstance(traits, dict):
        raise InvalidEventPayload("traits must be an object")
    email = str(traits.get("email") or "").strip().lower()
    if not EMAIL.match(email):
        # Say what is wrong, not the value: error messages are shown to your whole team.
        raise ValidationError("traits.email is missing or not an email address")
    traits["email"] = email

    phone = traits.get("phone")
    if phone:
        try:
            number = phonenumbers.parse(str(phone), settings.get("defaultRegion") or "US")
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            traits["phone"] = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        else:
            log.warning("removed a phone number that is not valid")
            del traits["phone"]
    return event
