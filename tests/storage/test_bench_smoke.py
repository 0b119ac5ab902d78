"""bench/store.py at a tiny size, so the benchmark cannot rot between runs of ``make bench``."""

from __future__ import annotations

from pathlib import Path

from bench.store import Sizes, run

TINY = Sizes(
    appends=10,
    parallel_accounts=2,
    parallel_appends=5,
    seed_messages=5,
    big_mailbox=20,
    fanout_accounts=3,
    repeats=1,
    rounds=1,
)


async def test_bench_runs_every_measurement_at_a_tiny_size(tmp_path: Path) -> None:
    """Every measurement runs against a real store and reports a positive number; the
    fan-out shares one file among its recipients (the temp file's link is gone by then)."""
    lines: list[str] = []
    results = await run(tmp_path / "data", TINY, report=lines.append)
    assert [r.unit for r in results] == ["msg/s", "msg/s", "msg/s", "ms", "ms", "s", "s"]
    assert all(r.value > 0 for r in results)
    assert len(lines) == len(results) + 1
    for fanout in results[-2:]:
        assert fanout.note.endswith(f"first file has {TINY.fanout_accounts} links")
