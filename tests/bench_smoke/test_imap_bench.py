"""bench/imap.py must keep working: a ~2 s run of every measurement against a real msgstore serve.

No Dovecot needed (``--compare-dovecot`` is not used). The numbers are not checked, only that
every part ran, answered OK and lost no connection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import imap


@pytest.mark.timeout(180)
def test_quick_run_against_msgstore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    args = ["--quick", "--duration", "2", "--idle", "8", "--big", "300", "--json", str(out)]
    assert imap.main(args) == 0
    report = json.loads(out.read_text())

    (load,) = report["load"]
    assert load["server"] == "msgstore"
    assert load["errors"] == {}
    assert load["failures"] == {}
    assert load["ops"] > 20
    for name in ("LOGIN", "SELECT", "FETCH meta", "FETCH BODY[]", "STORE", "SEARCH"):
        assert name in load["latency_ms"], name

    (big,) = report["big"]
    assert big["messages"] == 300
    assert big["fetch_ms"] > 0

    (idle,) = report["idle"]
    assert idle["held"] == 8
    assert idle["failures"] == {}
    assert idle["after"]["rss_kib"] > 0
    assert "ops/s" in capsys.readouterr().out


def test_mix_is_checked() -> None:
    assert imap.Profile.parse_mix("fetch_meta=1,append=2") == (("fetch_meta", 1), ("append", 2))
    with pytest.raises(ValueError, match="unknown operation"):
        imap.Profile.parse_mix("fetch_meta=1,delete_everything=2")
