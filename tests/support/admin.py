"""Forms and actions of the Django admin's user pages, posted as a browser posts them."""

from __future__ import annotations

from django.utils import timezone

from accounts.models import Profile, User


def user_form(user: User, **changes) -> dict:
    """The user change form as the admin posts it, with `changes` applied (None leaves a field
    out, as an unticked checkbox is left out)."""
    form = {
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": f"{timezone.localtime(user.date_joined):%Y-%m-%d}",
        "date_joined_1": f"{timezone.localtime(user.date_joined):%H:%M:%S}",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "1",
        "profile-MIN_NUM_FORMS": "0",
        "profile-MAX_NUM_FORMS": "1",
        "profile-0-user": user.pk,
        "profile-0-id": Profile.objects.get_or_create(user=user)[0].pk,
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def reset_mfa(client, *users):
    """The Users list's "Reset two-step sign-in" action on `users`, followed to its page."""
    return client.post(
        "/admin/accounts/user/",
        {"action": "reset_mfa", "_selected_action": [str(u.pk) for u in users]},
        follow=True,
    )
