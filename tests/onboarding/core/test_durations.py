from datetime import timedelta

import pytest

from onboarding.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("6h", 21600),
        ("1h30m", 5400),
        ("7d", 604800),
        ("45", 45),
        (12, 12),
        ("500ms", 0.5),
        (" 2h ", 7200),
    ],
)
def test_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "6x", "1h30", "-5m", "six hours", "1h 30q"])
def test_parse_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 90s"):
        parse_duration(text)


def test_format_round_trips() -> None:
    for text in ("1d", "6h", "1h30m", "45s", "7d"):
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize("text", [10**400, 1e300, "99999999999999999999d", float("inf")])
def test_huge_durations_are_a_clear_error(text: object) -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration(text)  # type: ignore[arg-type]
