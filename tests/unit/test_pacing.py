"""duo_ods.pacing: background work that grows with the zones takes at most its share of the time."""

from __future__ import annotations

import pytest

from duo_ods.pacing import BACKGROUND_SHARE, next_due


def test_a_quick_run_keeps_its_interval() -> None:
    assert next_due(100.0, 0.5, 10.0) == 110.0


def test_a_slow_run_stretches_the_interval_to_its_share() -> None:
    assert BACKGROUND_SHARE == 0.1
    assert next_due(100.0, 5.0, 10.0) == 150.0  # a 5 s snapshot: every 50 s, not every 10
    assert next_due(100.0, 19.0, 60.0, share=0.5) == 160.0
    assert next_due(100.0, 40.0, 60.0, share=0.5) == 180.0


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        next_due(0.0, 1.0, 1.0, share=share)
