from sluice.fn import ValidationError


def on_track(event, settings):
    user_id = event.get("userId")

    print("User ID is", user_id)

    if not isinstance(user_id, str) or len(user_id) < 8:
        raise ValidationError("User ID is invalid")

    print("User ID is valid")
    return event
