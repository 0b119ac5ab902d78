"""The socketmap service over real sockets: answers from the delivery pipeline, bad input.

socketmap_table(5): request ``name key``, replies ``OK value`` / ``NOTFOUND `` / ``TEMP
reason`` / ``PERM reason``, each one netstring, many per connection.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from msgstore.core.errors import ErrorKind
from msgstore.delivery.replies import REPLIES, Phase, kind_reply
from msgstore.socketmap.netstring import encode
from tests.socketmap.conftest import Socketmap, start_socketmap, stop_socketmap


async def test_a_known_address_is_ok_and_an_unknown_one_notfound(socketmap: Socketmap) -> None:
    await socketmap.add_account("alice")
    client = await socketmap.client()
    assert await client.lookup("recipients", "alice@example.test") == "OK alice@example.test"
    assert await client.lookup("recipients", "nobody@example.test") == "NOTFOUND "
    # Same connection, many lookups (Postfix keeps it open). Account names ignore case, as
    # at LMTP RCPT; the domain is written in lower case.
    assert await client.lookup("recipients", "Alice@EXAMPLE.test") == "OK Alice@example.test"
    assert await client.lookup("recipients", "alice") == "OK alice"


async def test_recipients_follow_the_rcpt_rules_of_the_lmtp_server(socketmap: Socketmap) -> None:
    """Plus-addressing, virtual domains and the receive switch, as at LMTP RCPT."""
    await socketmap.add_account("bob")
    await socketmap.add_account("carol")
    await socketmap.disable_receive("carol")
    client = await socketmap.client()
    assert await client.lookup("recipients", "bob+lists@example.test") == (
        "OK bob+lists@example.test"
    )
    assert await client.lookup("recipients", "bob@elsewhere.example") == "NOTFOUND "
    assert await client.lookup("recipients", "carol@example.test") == "NOTFOUND "
    assert await client.lookup("recipients", "not an address@") == "NOTFOUND "


async def test_recipient_access_gives_the_lmtp_reply_for_each_refusal(
    socketmap: Socketmap,
) -> None:
    await socketmap.add_account("dave")
    await socketmap.add_account("erin")
    await socketmap.add_account("frank")
    await socketmap.disable_receive("erin")
    await socketmap.fill_quota("frank")
    client = await socketmap.client()
    lookup = client.lookup
    assert await lookup("recipient_access", "dave@example.test") == "OK DUNNO"
    assert await lookup("recipient_access", "nobody@example.test") == "OK 550 5.1.1 No such user"
    assert await lookup("recipient_access", "erin@example.test") == (
        "OK 550 5.2.1 Account does not receive mail"
    )
    assert (await lookup("recipient_access", "frank@example.test")).startswith("OK 552 5.2.2 ")
    # Postfix also looks up the domain and "user@": no opinion on those.
    assert await lookup("recipient_access", "example.test") == "NOTFOUND "
    assert await lookup("recipient_access", "nobody@") == "NOTFOUND "


async def test_domains_are_the_delivery_domains(socketmap: Socketmap) -> None:
    client = await socketmap.client()
    assert await client.lookup("domains", "example.test") == "OK example.test"
    assert await client.lookup("domains", "EXAMPLE.TEST") == "OK example.test"
    assert await client.lookup("domains", "elsewhere.example") == "NOTFOUND "


async def test_the_unix_socket_answers_the_same(socketmap: Socketmap) -> None:
    await socketmap.add_account("gina")
    mode = os.stat(socketmap.unix_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    client = await socketmap.client(unix=True)
    assert await client.lookup("recipients", "gina@example.test") == "OK gina@example.test"
    assert await client.lookup("recipients", "nobody@example.test") == "NOTFOUND "


async def test_pipelined_requests_are_answered_in_order(socketmap: Socketmap) -> None:
    await socketmap.add_account("hank")
    client = await socketmap.client()
    keys = ["hank@example.test", "x@example.test", "hank", "y@example.test"] * 5
    await client.send(b"".join(encode(f"recipients {k}".encode()) for k in keys))
    replies = [await client.reply() for _ in keys]
    expected = [b"NOTFOUND " if k[0] in "xy" else f"OK {k}".encode() for k in keys]
    assert replies == expected


async def test_a_request_arriving_octet_by_octet_is_answered(socketmap: Socketmap) -> None:
    client = await socketmap.client()
    for octet in encode(b"domains example.test"):
        await client.send(bytes([octet]))
    assert await client.reply() == b"OK example.test"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"hello\r\n", b"PERM malformed netstring length"),
        (b"01:x,", b"PERM malformed netstring length (leading zero)"),
        (b"5:abcdef", b"PERM netstring not terminated by a comma"),
        (b"99999:", b"PERM request longer than 2048 octets"),
        (encode(b"recipients " + b"a" * 2100), b"PERM request longer than 2048 octets"),
        (encode(b"recipients \xff@example.test"), b"PERM request is not UTF-8"),
        (encode(b"recipients"), b"PERM malformed request: expected 'name key'"),
        (encode(b" alice"), b"PERM malformed request: expected 'name key'"),
        (encode(b"aliases alice"), b"PERM unknown map 'aliases'"),
    ],
)
async def test_bad_input_gets_perm_and_the_connection_closes(
    socketmap: Socketmap, wire: bytes, reason: bytes
) -> None:
    client = await socketmap.client()
    await client.send(wire)
    reply = await client.reply()
    assert reply is not None
    assert reply.startswith(reason), reply
    assert await client.closed()
    # The service itself goes on.
    other = await socketmap.client()
    assert await other.lookup("domains", "example.test") == "OK example.test"


async def test_storage_unavailable_is_temp(socketmap: Socketmap) -> None:
    client = await socketmap.client()
    assert await client.lookup("recipients", "x@example.test") == "NOTFOUND "
    await socketmap.backend.close()
    reply = await client.lookup("recipients", "x@example.test")
    assert reply.startswith("TEMP "), reply
    assert (await client.lookup("recipient_access", "x@example.test")).startswith("OK 451 4.3.0")


async def test_over_quota_is_temp_when_configured_temporary(short_dir: Path) -> None:
    sm = await start_socketmap(short_dir, {"over_quota_temporary": True})
    try:
        await sm.add_account("ivy")
        await sm.fill_quota("ivy")
        client = await sm.client()
        assert (await client.lookup("recipients", "ivy@any.example")).startswith("TEMP Mailbox")
        assert (await client.lookup("recipient_access", "ivy@any.example")).startswith(
            "OK 452 4.2.2 "
        )
        # No [delivery] domains: every domain is local.
        assert await client.lookup("domains", "any.example") == "OK any.example"
    finally:
        await stop_socketmap(sm)


def test_every_error_kind_has_an_access_reply() -> None:
    for phase in Phase:
        assert set(REPLIES[phase]) == set(ErrorKind)
        for reply in REPLIES[phase].values():
            assert reply.code // 100 == int(reply.enhanced[0])
            assert reply.code // 100 in (4, 5)
            assert reply.temporary().code // 100 == 4


def test_the_rcpt_and_data_tables_differ_only_where_the_phase_matters() -> None:
    """One table for LMTP and socketmap (delivery/replies.py): at RCPT a PARAMS refusal is
    about the address (553 5.1.3), after the data about the message (550 5.6.0)."""
    rcpt, data = REPLIES[Phase.RCPT], REPLIES[Phase.DATA]
    differ = {kind for kind in ErrorKind if rcpt[kind] != data[kind]}
    assert differ == {ErrorKind.PARAMS, ErrorKind.AUTH_FAILED}
    assert kind_reply(ErrorKind.PARAMS, Phase.RCPT).enhanced == "5.1.3"
    assert kind_reply(ErrorKind.PARAMS).enhanced == "5.6.0"
