"""Reading past turns: one's own, an administrator's view of everyone's, and the Django admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from streaming.models import Conversation, History

pytestmark = pytest.mark.django_db


USAGE = {"input_tokens": 30, "output_tokens": 13, "total_tokens": 43, "cached_input_tokens": 0}


@pytest.fixture
def turns(user, other_user):
    now = timezone.now()
    course = Conversation.objects.create(user=user, course_id="c-1", course_name="Ops")

    def turn(owner, minutes_ago: int, prompt: str, **fields):
        fields.setdefault("status", History.Status.COMPLETE)
        return History.objects.create(
            user=owner,
            inputs=[prompt],
            completion=f"answer to {prompt}",
            model="builtin",
            provider="builtin",
            latency_ms=120,
            created_at=now - timedelta(minutes=minutes_ago),
            **fields,
        )

    return {
        "old": turn(user, 30, "list my workspaces", conversation=course),
        "mid": turn(user, 20, "what is running?", usage=USAGE),
        "new": turn(user, 10, "open the wiki", conversation=course, status="cancelled"),
        "theirs": turn(other_user, 5, "what is running?"),
        "now": now,
    }


def test_a_user_lists_only_their_own_turns_newest_first(api, turns):
    body = api.get("/api/user/histories").json()

    assert body["success"] is True
    assert [item["id"] for item in body["data"]] == [
        turns["new"].pk,
        turns["mid"].pk,
        turns["old"].pk,
    ]
    newest = body["data"][0]
    assert newest["status"] == "cancelled"
    assert newest["course_id"] == "c-1" and newest["course_name"] == "Ops"
    assert newest["inputs"] == ["open the wiki"]
    assert "latency_ms" not in newest and "user" not in newest
    assert body["data"][1]["course_id"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("course_id=c-1", ["new", "old"]),
        ("search=RUNNING", ["mid"]),
        ("search=answer%20to%20open", ["new"]),
        ("limit=1", ["new"]),
    ],
)
def test_history_filters(api, turns, query, expected):
    body = api.get(f"/api/user/histories?{query}").json()

    assert [item["id"] for item in body["data"]] == [turns[name].pk for name in expected]


def test_history_time_window(api, turns):
    before = (turns["now"] - timedelta(minutes=15)).isoformat()
    after = (turns["now"] - timedelta(minutes=25)).isoformat()

    body = api.get("/api/user/histories", {"before": before, "after": after}).json()

    assert [item["id"] for item in body["data"]] == [turns["mid"].pk]


def test_bad_history_filters_are_a_400(api, turns):
    response = api.get("/api/user/histories?limit=0&before=yesterday")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"limit", "before"}


def test_a_turn_gives_its_usage_as_one_number_and_its_breakdown_apart(api, turns):
    turn = api.get(f"/api/user/histories/{turns['mid'].pk}").json()["data"]

    assert turn["usage"] == 43
    assert turn["usageDetails"] == USAGE


def test_one_turn_is_readable_by_its_owner_only(api, client_for, other_user, turns):
    mine = api.get(f"/api/user/histories/{turns['old'].pk}")
    theirs = api.get(f"/api/user/histories/{turns['theirs'].pk}")
    missing = api.get("/api/user/histories/999999")

    assert mine.status_code == 200
    assert mine.json()["data"]["completion"] == "answer to list my workspaces"
    assert mine.json()["data"]["usage"] == 0  # a number, as in the final event; none stored
    assert theirs.status_code == 404 and missing.status_code == 404
    assert (
        theirs.json()
        == missing.json()
        == {
            "success": False,
            "detail": "History not found",
            "code": "not_found",
        }
    )


def test_administrators_read_everyones_turns_with_latency(
    admin_api, api, client_for, staff_with, turns, other_user
):
    everyone = admin_api.get("/api/admin/histories").json()
    theirs = admin_api.get(f"/api/admin/histories?user_id={other_user.pk}").json()
    cancelled = admin_api.get("/api/admin/histories?status=cancelled").json()
    refused = api.get("/api/admin/histories")
    staff_refused = client_for(staff_with()).get("/api/admin/histories")

    assert len(everyone["data"]) == 4
    assert everyone["data"][0]["user"] == {"id": other_user.pk, "email": other_user.email}
    assert everyone["data"][0]["latency_ms"] == 120
    assert [item["id"] for item in theirs["data"]] == [turns["theirs"].pk]
    assert [item["id"] for item in cancelled["data"]] == [turns["new"].pk]
    assert refused.status_code == staff_refused.status_code == 403
    assert refused.json()["detail"] == staff_refused.json()["detail"] == "Admin access required"


def test_the_routes_are_documented_for_their_audiences(anon):
    runtime = anon.get("/api/rt-docs.json").json()["paths"]
    admin = anon.get("/api/admin-docs.json").json()["paths"]

    for path in (
        "/api/ai/personal-stream/qanda-stream",
        "/api/ai/personal/qanda",
        "/api/user/histories",
        "/api/user/histories/{history_id}",
        "/api/user/courses",
    ):
        assert path in runtime and path not in admin
    assert "/api/admin/histories" in admin and "/api/admin/histories" not in runtime
    stream = runtime["/api/ai/personal-stream/qanda-stream"]["post"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]


def test_the_django_admin_shows_every_model_and_keeps_history_read_only(client, superuser, turns):
    client.force_login(superuser)

    for model in ("institution", "membership", "assistant", "conversation", "history"):
        assert client.get(f"/admin/streaming/{model}/").status_code == 200
    page = client.get(f"/admin/streaming/history/{turns['old'].pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.get("/admin/streaming/history/add/").status_code == 403
    assert client.get(f"/admin/streaming/history/{turns['old'].pk}/delete/").status_code == 403
