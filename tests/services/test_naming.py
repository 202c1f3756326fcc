from __future__ import annotations

import pytest

from patchbay.services.naming import (
    MAX_TOOL_NAME,
    NameRequest,
    default_tool_name,
    is_valid_tool_name,
    resolve_names,
    sanitize_tool_name,
)
from patchbay.services.slugs import is_slug, slugify


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("time", "time"),
        ("My Time Server", "my-time-server"),
        ("github_mcp", "github_mcp"),
        ("a__b", "a-b"),
        ("  --Fetch!!  ", "fetch"),
        ("Café Münster", "cafe-munster"),
        ("x" * 50, "x" * 32),
        ("!!!", ""),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize("name", ["time", "My Time", "a__b_c--d", "Ünïcödé  name", "_x_", "a" * 40 + "-b"])
def test_slugify_is_idempotent_and_never_contains_the_separator(name: str) -> None:
    slug = slugify(name)
    assert slugify(slug) == slug
    assert "__" not in slug
    assert is_slug(slug)


def test_default_names_are_prefixed_with_the_upstream_slug() -> None:
    assert default_tool_name(slug="time", tool_name="get_current_time", plain=False) == "time__get_current_time"
    assert default_tool_name(slug="time", tool_name="get_current_time", plain=True) == "get_current_time"


@pytest.mark.parametrize("name", ["get time", "搜索", "a/b", "x" * 200, "", "tool:call"])
def test_invalid_names_are_sanitised_deterministically(name: str) -> None:
    clean = sanitize_tool_name(name)
    assert is_valid_tool_name(clean)
    assert len(clean) <= MAX_TOOL_NAME
    assert sanitize_tool_name(name) == clean


def test_sanitising_keeps_distinct_names_distinct() -> None:
    assert sanitize_tool_name("a b") != sanitize_tool_name("a_b")
    assert sanitize_tool_name("a b") != sanitize_tool_name("a/b")


def test_valid_names_pass_unchanged() -> None:
    for name in ["a", "get_time", "v1.2-beta", "x" * 128]:
        assert sanitize_tool_name(name) == name


def test_collisions_get_a_stable_suffix_and_the_oldest_keeps_the_name() -> None:
    names = resolve_names([NameRequest("002", "search"), NameRequest("001", "search"), NameRequest("003", "other")])
    assert names["001"] == "search"
    assert names["003"] == "other"
    assert names["002"].startswith("search_") and len(names["002"]) == len("search_") + 6
    again = resolve_names([NameRequest("001", "search"), NameRequest("002", "search"), NameRequest("003", "other")])
    assert again == names


def test_an_override_beats_a_generated_name() -> None:
    names = resolve_names([NameRequest("001", "search"), NameRequest("002", "search", explicit=True)])
    assert names["002"] == "search"
    assert names["001"] != "search"


def test_a_suffixed_name_never_takes_another_tools_own_name() -> None:
    first = resolve_names([NameRequest("001", "x"), NameRequest("002", "x")])["002"]
    names = resolve_names([NameRequest("001", "x"), NameRequest("002", "x"), NameRequest("000", first)])
    assert names["000"] == first
    assert len(set(names.values())) == 3


def test_long_colliding_names_stay_within_the_limit() -> None:
    long = "y" * 128
    names = resolve_names([NameRequest("001", long), NameRequest("002", long)])
    assert all(len(n) <= MAX_TOOL_NAME and is_valid_tool_name(n) for n in names.values())
    assert len(set(names.values())) == 2
