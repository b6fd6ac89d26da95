"""Which node serial levelling brings up, and to what."""

from __future__ import annotations

from duo_ods.zones.level import lagging


def test_a_node_further_behind_than_the_bound_is_brought_to_the_leader() -> None:
    assert lagging({"a": 2026112816, "b": 2026112806}, 5) == (2026112816, ["b"])


def test_within_the_bound_nothing_moves() -> None:
    assert lagging({"a": 2026112810, "b": 2026112805}, 5) == (2026112810, [])


def test_a_silent_node_is_left_alone_and_one_answer_is_not_enough() -> None:
    assert lagging({"a": 2026112816, "b": None}, 0) == (None, [])
    assert lagging({"a": 2026112816, "b": None, "c": 2026112801}, 0) == (2026112816, ["c"])
