import calendar

import pytest

from duo_ods.zones.serial import Seen, catch_up_serial, days_ahead, next_serial, with_serial_floor

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


# --- catch-up: the serial takes the content into account ------------------------------------


def test_a_stale_copy_on_top_is_outranked() -> None:
    # b came back with old data at ...04, above a's new data at ...03: b's next copy goes above both,
    # and above the secondary that took b's stale copy.
    copies = {"signer a": Seen(2026112803, True), "secondary ns1": Seen(2026112804, False)}
    assert catch_up_serial(copies, Seen(2026112804, False), "datecounter", NOV_28) == 2026112805


def test_joins_the_newest_content_at_its_serial() -> None:
    # Same serial, same content: the secondaries that hold ...07 need nothing more.
    copies = {"signer a": Seen(2026112807, True), "secondary ns1": Seen(2026112807, True)}
    assert catch_up_serial(copies, Seen(2026112801, False), "datecounter", NOV_28) == 2026112807
    assert catch_up_serial(copies, None, "datecounter", NOV_28) == 2026112807


def test_unknown_content_on_top_counts_as_stale() -> None:
    copies = {"signer a": Seen(2026112807, True), "secondary ns1": Seen(2026112807, None)}
    assert catch_up_serial(copies, Seen(2026112801, False), "datecounter", NOV_28) == 2026112808


def test_never_the_serial_the_node_itself_served_with_old_content() -> None:
    # b served old data at ...07 itself: a secondary may hold that; b must go above it.
    copies = {"signer a": Seen(2026112807, True)}
    assert catch_up_serial(copies, Seen(2026112807, False), "datecounter", NOV_28) == 2026112808


def test_nothing_to_do_when_the_node_serves_the_newest_content_on_top() -> None:
    copies = {"signer a": Seen(2026112805, True), "secondary ns1": Seen(2026112805, True)}
    assert catch_up_serial(copies, Seen(2026112806, True), "datecounter", NOV_28) is None
    assert catch_up_serial(copies, Seen(2026112805, True), "datecounter", NOV_28) is None
    assert catch_up_serial({}, Seen(2026112805, True), "datecounter", NOV_28) is None
    # ...but not when something stale sits at the same serial
    stale = {"secondary ns1": Seen(2026112805, False)}
    assert catch_up_serial(stale, Seen(2026112805, True), "datecounter", NOV_28) == 2026112806


def test_datecounter_headroom_runs_into_tomorrow() -> None:
    copies = {"signer a": Seen(2026112899, False)}
    chosen = catch_up_serial(copies, None, "datecounter", NOV_28)
    assert chosen == 2026112900  # the 100th serial of the 28th carries the 29th's date
    assert days_ahead(chosen, "datecounter", NOV_28) == 1
    assert days_ahead(2026112899, "datecounter", NOV_28) == 0
    assert days_ahead(2026113000, "counter", NOV_28) == 0


def test_with_serial_floor_raises_only_the_apex_soa_serial() -> None:
    text = (
        "example.test. 300 IN SOA ns1.example.test. hostmaster.example.test. 2026112900 3600 600 864000 300\n"
        "example.test. 300 IN NS ns1.example.test.\n"
        "sub.example.test. 300 IN SOA ns1 h 5 1 1 1 1\n"
    )
    raised = with_serial_floor(text, "example.test", 2026112907)
    first, *rest = raised.split("\n")
    assert first.split()[6] == "2026112907" and "\n".join(rest) == "\n".join(text.split("\n")[1:])
    assert with_serial_floor(text, "example.test", 2026112800) == text  # never lowered


def test_with_serial_floor_needs_an_apex_soa() -> None:
    with pytest.raises(ValueError, match="no SOA record at the apex"):
        with_serial_floor("example.test. 300 IN NS ns1.example.test.\n", "example.test", 5)
