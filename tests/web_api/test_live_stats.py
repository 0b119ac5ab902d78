"""The per-minute ring of ``msgstore.metrics.LiveStats`` (what ``stats live`` sums)."""

from __future__ import annotations

from msgstore.metrics import LIVE_EVENTS, LiveStats

T0 = 1_800_000_000.0  # an epoch second at some minute's start + 0


def test_events_land_in_their_minute() -> None:
    live = LiveStats()
    live.add("logins", now=T0)
    live.add("logins", 2, now=T0 + 59)
    live.add("deliveries", 5, now=T0 + 60)
    snap = live.snapshot(now=T0 + 61)
    assert len(snap) == 60
    assert snap[-1].minute == int((T0 + 61) // 60)
    assert snap[-1].counts == {**dict.fromkeys(LIVE_EVENTS, 0), "deliveries": 5}
    assert snap[-2].counts["logins"] == 3
    assert sum(sum(m.counts.values()) for m in snap[:-2]) == 0


def test_minutes_older_than_an_hour_are_forgotten() -> None:
    live = LiveStats()
    live.add("errors", now=T0)
    assert sum(m.counts["errors"] for m in live.snapshot(now=T0 + 59 * 60)) == 1
    assert sum(m.counts["errors"] for m in live.snapshot(now=T0 + 60 * 60)) == 0
    # The slot is reused for the new minute, not added to.
    live.add("errors", 4, now=T0 + 60 * 60)
    snap = live.snapshot(now=T0 + 60 * 60)
    assert snap[-1].counts["errors"] == 4
    assert sum(m.counts["errors"] for m in snap) == 4


def test_nothing_counted_for_zero_or_less() -> None:
    live = LiveStats()
    live.add("deliveries", 0, now=T0)
    live.add("deliveries", -3, now=T0)
    assert all(v == 0 for m in live.snapshot(now=T0) for v in m.counts.values())
