"""The catalog search takes words from people and models: a flood of them cannot become a
query that takes minutes to build or more parameters than PostgreSQL accepts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from workspaces.selectors import MAX_SEARCH_WORDS, workspace_search

pytestmark = pytest.mark.django_db


def test_a_search_of_thousands_of_words_uses_only_the_first_few_distinct_ones(user):
    query = " ".join(f"word{i}" for i in range(1500))

    with CaptureQueriesContext(connection) as captured:
        assert list(workspace_search(query, user=user)) == []

    search_sql = captured.captured_queries[-1]["sql"]
    assert search_sql.count("LIKE") <= 3 * MAX_SEARCH_WORDS


def test_repeated_words_count_once(user):
    assert [w.id for w in workspace_search("linux " * 5000, user=user)] == ["ws-linux-desktop"]


def test_every_word_up_to_the_limit_must_still_match(user):
    assert [w.id for w in workspace_search("SAP tsplus", user=user)] == ["ws-sap-neogenesys"]
    assert not workspace_search("SAP tsplus nothing-like-this", user=user).exists()
