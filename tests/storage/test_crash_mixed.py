"""RELIABILITY.md §7 case 32 with COPY and EXPUNGE: the kill -9 loop of test_crash.py (see
its docstring) on the appender's mixed workload. A file of its own so that ``--dist loadfile``
can run it beside the append loop on another worker."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from tests.storage.test_crash import LOOP_TIMEOUT_S, _kill_loop

#: Kills in the loop that mixes appends with COPY and EXPUNGE.
MIXED_ITERATIONS: Final = 100


@pytest.mark.timeout(LOOP_TIMEOUT_S)
def test_kill9_during_copies_and_expunges_keeps_the_store_consistent(tmp_path: Path) -> None:
    """The same checks with appends, COPYs and EXPUNGEs mixed (RELIABILITY.md §6): an
    acknowledged copy is present with the source's bytes, an acknowledged expunge stays done
    (an expunge killed after its commit may be done without an ACK), and a kill between an
    expunge's commit and its unlink leaves no orphan file after recovery."""
    expected, _ = _kill_loop(tmp_path, "mixed", MIXED_ITERATIONS)
    for kind in ("ACK", "COPIED", "EXPUNGED"):
        assert expected.counts.get(kind, 0) >= MIXED_ITERATIONS // 10, f"too few {kind}"
