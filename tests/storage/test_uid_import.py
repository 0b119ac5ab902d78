"""Contract: ``SupportsUidImport.import_uid_state`` (optional; ``msgstore migrate`` keeps a
source's UIDs with it). UIDNEXT only ever rises, the next ``append`` takes it, UIDVALIDITY
can be set only while the mailbox never held a message, and a UIDVALIDITY set this way is
never handed to a new mailbox. A backend without the capability is left alone."""

from __future__ import annotations

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import MailboxId, Uid, UidValidity
from msgstore.core.names import MailboxName
from msgstore.storage.base import Backend, Feature, SupportsUidImport
from tests.storage.support import append, message


async def test_import_uid_state(backend: Backend, alice: AccountInfo, inbox: MailboxId) -> None:
    if Feature.UID_IMPORT not in backend.features:
        return  # optional: nothing to check
    assert isinstance(backend, SupportsUidImport)
    box = await backend.create_mailbox(alice.id, MailboxName("Imported"))
    validity = UidValidity(box.uidvalidity + 1000)
    await backend.import_uid_state(alice.id, box.id, uidvalidity=validity, uidnext=Uid(7))
    status = await backend.mailbox_status(alice.id, box.id)
    assert (status.uidvalidity, status.uidnext) == (validity, 7)
    first = await append(backend, alice.id, box.id, message("seven"))
    assert (first.uid, first.uidvalidity) == (7, validity)
    await backend.import_uid_state(alice.id, box.id, uidvalidity=None, uidnext=Uid(3))
    assert (await backend.mailbox_status(alice.id, box.id)).uidnext == 8  # never lowered
    await backend.import_uid_state(alice.id, box.id, uidvalidity=validity, uidnext=Uid(20))
    assert (await append(backend, alice.id, box.id, message("twenty"))).uid == 20
    with pytest.raises(StoreError) as caught:
        await backend.import_uid_state(
            alice.id, box.id, uidvalidity=UidValidity(validity + 1), uidnext=Uid(1)
        )
    assert caught.value.kind is ErrorKind.NOT_POSSIBLE
    await append(backend, alice.id, inbox, message("inbox"))
    with pytest.raises(StoreError) as caught:
        await backend.import_uid_state(alice.id, inbox, uidvalidity=None, uidnext=Uid(0))
    assert caught.value.kind is ErrorKind.PARAMS
    fresh = await backend.create_mailbox(alice.id, MailboxName("Later"))
    assert fresh.uidvalidity != validity
    assert fresh.uidvalidity > validity
