import calendar

from duo_ods.zones.serial import next_serial

NOV_28 = calendar.timegm((2026, 11, 28, 12, 0, 0))


def test_datecounter_above_every_node_and_not_below_today() -> None:
    assert next_serial([2026112801, 2026112806], "datecounter", NOV_28) == 2026112807
    assert next_serial([2026112001], "datecounter", NOV_28) == 2026112800  # a new day starts at 00
    assert next_serial([], "datecounter", NOV_28) == 2026112800


def test_counter_and_unixtime() -> None:
    assert next_serial([41, 7], "counter", NOV_28) == 42
    assert next_serial([5], "unixtime", NOV_28) == NOV_28
    assert next_serial([NOV_28 + 10], "unixtime", NOV_28) == NOV_28 + 11


def test_wraps_in_serial_space() -> None:
    assert next_serial([2**32 - 1], "counter") == 0
