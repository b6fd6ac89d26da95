"""Pacing of periodic background work whose cost grows with the number of zones: the watcher's
backup snapshot and the metrics exporter's check of every zone.

Each is due `interval` after its last run started, and never before the last run's duration divided
by `share` has passed, so it takes at most that share of the time however many zones there are. An
interval chosen for a hundred zones (the lab's 10 s snapshots, a 60 s check) would otherwise run the
work back to back at thousands: measured at 1,000 zones on 2 cores, a snapshot took 5 s and a check
19 s (with 1.6 cores busy), together about a core taken from the signers during onboarding.
"""

from __future__ import annotations

# At most a tenth of the time: a snapshot or a check that takes longer than a tenth of its interval
# stretches the interval rather than crowding out the signers.
BACKGROUND_SHARE = 0.1


def next_due(started: float, duration: float, interval: float, share: float = BACKGROUND_SHARE) -> float:
    """When the next run is due: `interval` after the last started, or later when the last took more
    than `share` of that."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    return started + max(interval, duration / share)
