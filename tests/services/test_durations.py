from __future__ import annotations

from datetime import timedelta

import pytest

from patchbay.errors import InvalidInput
from patchbay.services.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("15m", timedelta(minutes=15)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "30 days", "-5m", "1.5h", "0s", "0d0h", "99999999999999d", "11y"])
def test_bad_durations_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_more_than_ten_years_is_refused() -> None:
    with pytest.raises(InvalidInput, match="too long"):
        parse_duration("3651d")


def test_format_duration_is_the_inverse_for_whole_units() -> None:
    assert format_duration(timedelta(days=1, hours=12)) == "1d12h"
    assert parse_duration(format_duration(timedelta(seconds=3725))) == timedelta(seconds=3725)
