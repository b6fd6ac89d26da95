import pytest

from duo_ods.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1H", 3600),
        ("P14D", 14 * 86400),
        ("PT1H30M", 5400),
        ("P1W", 604800),
        ("PT0S", 0),
        ("P1Y", 365 * 86400),
        ("P1M", 31 * 86400),
        ("P1DT2H", 86400 + 7200),
        ("pt5m", 300),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "1h", "PT1H2", "P1DT", "3600", "PT-1S"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_duration(text)


def test_format() -> None:
    assert format_duration(5400) == "PT5400S"
    with pytest.raises(ValueError):
        format_duration(-1)
