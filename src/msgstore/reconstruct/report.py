"""Rendering reconstruct reports: one line per discrepancy, or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgstore.storage.base import Discrepancy, ReconstructReport


def discrepancy_line(account: str, item: Discrepancy, *, applied: bool) -> str:
    """``account: mailbox: [code] text (repaired)`` -- the report and the log say the same."""
    where = f"{account}: {item.mailbox}: " if item.mailbox else f"{account}: "
    state = " (repaired)" if applied else ""
    return f"{where}[{item.code}] {item.text}{state}"


def report_lines(reports: Sequence[ReconstructReport]) -> list[str]:
    out: list[str] = []
    for r in reports:
        for item in r.discrepancies:
            out.append(discrepancy_line(r.account, item, applied=r.applied))
        if r.clean:
            verdict = "clean"
        elif r.applied:
            verdict = f"repaired {len(r.discrepancies)} discrepancies"
        else:
            verdict = f"{len(r.discrepancies)} discrepancies, not repaired"
        out.append(
            f"{r.account}: {verdict}; {r.mailboxes} mailboxes, {r.messages} messages, "
            f"{r.octets} octets, {r.seconds:.2f} s"
        )
    return out


def report_json(reports: Sequence[ReconstructReport]) -> list[dict[str, Any]]:
    return [
        {
            "account": r.account,
            "clean": r.clean,
            "applied": r.applied,
            "mailboxes": r.mailboxes,
            "messages": r.messages,
            "octets": r.octets,
            "seconds": round(r.seconds, 3),
            "discrepancies": [
                {"code": d.code, "mailbox": d.mailbox, "uid": d.uid, "text": d.text}
                for d in r.discrepancies
            ],
        }
        for r in reports
    ]
