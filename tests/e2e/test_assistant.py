"""The assistant page in a real browser: fetch streaming of the SSE endpoint, and Stop."""

from __future__ import annotations

import time

import pytest

from streaming.models import Assistant, Conversation, History
from tests.e2e.conftest import sign_in
from tests.support.providers import Reply, openai_chunk

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def ask(page, question: str) -> None:
    page.get_by_label("Your question").fill(question)
    page.get_by_role("button", name="Send").click()


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def test_the_assistant_streams_an_answer_with_its_reasoning_and_tool_calls(page, user, screenshot):
    sign_in(page, user)
    page.goto("/assistant")
    screenshot(page, "empty")

    ask(page, "What is running?")

    turn = page.locator("article.turn").last
    turn.and_(page.locator('[data-status="complete"]')).wait_for()
    tool = turn.locator(".tool")
    assert tool.get_attribute("data-status") == "ok"
    assert "list_sessions" in tool.inner_text()
    assert tool.locator(".duration").inner_text().endswith(" ms")
    thinking = turn.locator("details.thinking")
    assert thinking.get_attribute("data-done") == "true"
    assert thinking.get_attribute("open") is None  # a closed round folds away
    answer = turn.locator(".answer").inner_text()
    assert answer.strip()
    screenshot(page, "answered")

    history = History.objects.get(user=user)
    assert history.status == "complete"
    assert history.completion.strip() == answer.strip()
    # The address now names the conversation: a reload shows it in the list with its turn.
    page.reload()
    assert page.locator('aside a[aria-current="true"]').count() == 1
    assert page.locator("article.turn .question").inner_text() == "What is running?"


def test_stop_aborts_a_streaming_answer_and_the_turn_is_saved_as_cancelled(
    page, user, fake_openai, screenshot
):
    fake_openai.reset()
    fake_openai.script(
        Reply(
            events=[
                openai_chunk({"role": "assistant", "content": ""}),
                openai_chunk({"reasoning_content": "Counting, slowly."}),
                openai_chunk({"content": "One, "}),
                openai_chunk({"content": "two, "}),
            ],
            hang=True,  # ... and then nothing more until the client goes away
        )
    )
    slow = Assistant.objects.create(name="Slow counter", provider="openai", model="gpt-test")
    Conversation.objects.create(
        user=user, course_id="counting", course_name="Counting", assistant=slow
    )
    sign_in(page, user)
    page.goto("/assistant?course=counting")

    ask(page, "Count to a thousand")

    turn = page.locator("article.turn").last
    page.wait_for_function(
        "() => document.querySelector('article.turn:last-of-type .answer').textContent"
        " === 'One, two, '"
    )
    assert turn.get_attribute("data-status") == "streaming"  # the answer is still growing
    screenshot(page, "streaming")

    page.get_by_role("button", name="Stop").click()

    turn.and_(page.locator('[data-status="cancelled"]')).wait_for()
    assert page.get_by_role("button", name="Send").is_enabled()
    assert not page.get_by_role("button", name="Stop").is_visible()
    screenshot(page, "stopped")
    wait_until(lambda: History.objects.filter(user=user, status="cancelled").exists())
    history = History.objects.get(user=user)
    assert history.completion == "One, two, "
    assert fake_openai.client_left.wait(5)  # the provider request was cancelled too


def test_a_picked_assistant_answers_and_the_conversation_keeps_it(page, user, fake_openai):
    fake_openai.reset()
    fake_openai.script(
        Reply(
            events=[
                openai_chunk({"role": "assistant", "content": ""}),
                openai_chunk({"content": "Hello from the picked one."}),
                openai_chunk({}, finish="stop"),
            ]
        )
    )
    picked = Assistant.objects.create(name="Picked", provider="openai", model="gpt-test")
    sign_in(page, user)
    page.goto("/assistant")

    page.get_by_label("Assistant", exact=True).select_option(label="Picked")
    ask(page, "Who are you?")

    turn = page.locator("article.turn").last
    turn.and_(page.locator('[data-status="complete"]')).wait_for()
    assert turn.locator(".answer").inner_text() == "Hello from the picked one."
    history = History.objects.get(user=user)
    assert (history.assistant_id, history.provider) == (picked.pk, "openai")
    assert Conversation.objects.get(user=user).assistant_id == picked.pk
    page.wait_for_url("**course=*")  # the address names the conversation once the turn is done
    page.reload()
    assert page.get_by_label("Assistant", exact=True).input_value() == str(picked.pk)
