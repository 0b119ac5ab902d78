"""Parsing is cheap enough for the append target (1,000 messages/s including parse): a typical
10 KB text+html message parses in well under 0.5 ms on a laptop. The assertion allows 4x that,
best of many runs, so a busy test machine does not fail it; a regression to per-byte Python
loops or a re-parse would still be caught."""

from __future__ import annotations

import time

from msgstore.mime import normalize, parse_message

BODY = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n" * 55
TEN_KB = normalize(
    b"Return-Path: <alice@example.com>\n"
    b"Received: from mx.example.com by mail.example.org; Mon, 1 Jan 2024 10:00:01 +0000\n"
    b"Received: from client by mx.example.com; Mon, 1 Jan 2024 10:00:00 +0000\n"
    b'From: "Alice A." <alice@example.com>\n'
    b"To: bob@example.org, Carol <carol@example.net>\n"
    b"Cc: dave@example.com\n"
    b"Subject: =?utf-8?q?Re:_Caf=C3=A9?= meeting\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\n"
    b"Message-ID: <abc@example.com>\n"
    b"In-Reply-To: <prev@example.com>\n"
    b"References: <root@example.com> <prev@example.com>\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/alternative; boundary="b1"\n'
    b"\n"
    b"--b1\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n" + BODY + b"\n"
    b"--b1\n"
    b"Content-Type: text/html; charset=utf-8\n"
    b"\n"
    b"<html><body>\n" + BODY.replace(b"\n", b"<br>\n") + b"</body></html>\n"
    b"--b1--\n"
)


def test_ten_kilobyte_message_parses_fast() -> None:
    """Best of 50 parses of a 10 KB message stays under 2 ms (target: under 0.5 ms)."""
    assert 9_000 < len(TEN_KB) < 12_000
    best = min(_once() for _ in range(50))
    assert best < 0.002, f"{best * 1000:.3f} ms"


def _once() -> float:
    start = time.process_time()  # CPU time: other test workers share the cores
    parse_message(TEN_KB)
    return time.process_time() - start


def test_large_attachment_is_scanned_not_walked() -> None:
    """A 20 MB base64 attachment costs C-speed scanning, not a Python loop per line."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n"
    attachment = line * (20_000_000 // len(line))
    data = (
        b"Content-Type: multipart/mixed; boundary=big\r\n\r\n--big\r\n\r\nhi\r\n--big\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"--big--\r\n"
    )
    start = time.process_time()  # CPU time: other test workers share the cores
    parsed = parse_message(data)
    elapsed = time.process_time() - start
    assert elapsed < 2.0, f"{elapsed:.2f}s"
    part = parsed.partmap.part((2,))
    assert part is not None
    assert part.size == len(attachment) - 2
