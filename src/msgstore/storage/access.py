"""Access rights above every backend: who may do what on a mailbox (RFC 4314).

The backend stores ACL entries; this module decides what they mean for an acting account,
once, for every backend and every protocol (docs/architecture.md). The rules:

- the owner of a tree holds every right on it, whatever its ACL says;
- a manager account holds ``a`` (administer) everywhere;
- otherwise the rights are :func:`msgstore.core.acl.effective_rights` of the entries for the
  actor's name, ``anyone`` and ``authenticated``, minus the negative entries (``-name``...).

Identifiers name accounts, whose names compare case-insensitively, so entries are matched
after ``casefold``.

Namespaces and enforcement (:class:`MailboxAccess`, one per logged-in actor). Protocol code
names mailboxes as the user sees them; this class maps each name to a tree and checks the
rights RFC 4314 §4 asks for before calling the backend, so no protocol handler checks a right
itself (docs/architecture.md; Dovecot's ``src/plugins/acl/acl-mailbox.c``):

=====================================  ==================================================
``INBOX``, ``Work/2024`` ...           the actor's own tree (personal namespace ``""``)
``Other Users/<user>/<name>``          ``<name>`` in ``<user>``'s tree
``Public/<name>``                      ``<name>`` in the public tree (``public_account``);
                                       managers hold every right there
=====================================  ==================================================

A mailbox on which the actor lacks ``l`` raises NOT_FOUND exactly like a missing one (the
"no ``l`` looks nonexistent" rule); a missing other right raises NO_PERM. STORE and APPEND
drop the flags the actor may not set (``s`` for \\Seen, ``t`` for \\Deleted, ``w`` for the
rest) instead of failing, as RFC 4314 §4 specifies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.acl import (
    ANYONE,
    AUTHENTICATED,
    ListRights,
    Rights,
    effective_rights,
    modify_rights,
    validate_identifier,
)
from msgstore.core.acl import (
    listrights as acl_listrights,
)
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, SEEN, FlagOp, Flags
from msgstore.core.ids import AccountId, MailboxId, ModSeq, UidSet
from msgstore.core.names import DELIMITER, MailboxName, mailbox_name, parents
from msgstore.core.quota import QuotaInfo
from msgstore.storage.base import (
    AppendResult,
    Backend,
    CopyResult,
    MailboxInfo,
    MailboxStatus,
    StagedMessage,
    StoreFlagsResult,
    Want,
)


def rights_for(acl: Mapping[str, Rights], actor: AccountInfo, *, is_owner: bool) -> Rights:
    """The rights ``actor`` holds on a mailbox with ``acl`` (no I/O)."""
    folded: dict[str, Rights] = {}
    for ident, rights in acl.items():
        key = ident.casefold()
        folded[key] = folded.get(key, Rights()) | rights
    return effective_rights(
        folded, actor.name.casefold(), is_owner=is_owner, is_admin=actor.manager
    )


async def myrights(
    backend: Backend, actor: AccountInfo, owner: AccountId, mailbox: MailboxId
) -> Rights:
    """MYRIGHTS: the rights ``actor`` holds on ``owner``'s mailbox (RFC 4314 §3.5).

    Raises:
        StoreError: NOT_FOUND if the mailbox does not exist.
    """
    acl = await backend.get_acl(owner, mailbox)
    return rights_for(acl, actor, is_owner=actor.id == owner)


async def listrights(
    backend: Backend, owner: AccountId, mailbox: MailboxId, identifier: str
) -> ListRights:
    """LISTRIGHTS: what ``identifier`` always holds on the mailbox and what can be granted
    (RFC 4314 §3.7). The owner always holds everything, a manager always holds ``a``.

    Raises:
        StoreError: NOT_FOUND if the mailbox does not exist; PARAMS for a bad identifier.
    """
    ident = validate_identifier(identifier)
    await backend.get_acl(owner, mailbox)  # NOT_FOUND for a missing mailbox
    bare = ident.removeprefix("-")
    owner_info = await backend.get_account_by_id(owner)
    is_owner = bare.casefold() == owner_info.name.casefold()
    is_admin = False
    if bare not in (ANYONE, AUTHENTICATED):
        try:
            is_admin = (await backend.get_account(bare)).manager
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
    return acl_listrights(ident, is_owner=is_owner, is_admin=is_admin)


# --- namespaces and enforcement ---------------------------------------------------------------

#: Namespace prefixes (RFC 2342), delimiter included.
OTHER_USERS: Final = "Other Users/"
PUBLIC: Final = "Public/"
#: Quota root of the public tree (RFC 9208).
PUBLIC_QUOTA_ROOT: Final = "Public"


def _not_found() -> StoreError:
    return StoreError(ErrorKind.NOT_FOUND, "Mailbox does not exist")


def _no_perm(right: str) -> StoreError:
    return StoreError(ErrorKind.NO_PERM, f"Permission denied (the {right!r} right is needed)")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a name as the user sees it lives: ``local`` in ``owner``'s tree."""

    owner: AccountId
    local: MailboxName
    prefix: str  # "", "Other Users/<user>/" or "Public/"

    def visible(self, local: MailboxName) -> MailboxName:
        """The user-visible name of another mailbox of the same tree."""
        return MailboxName(self.prefix + local)


@dataclass(frozen=True, slots=True)
class OpenedMailbox:
    """A mailbox the actor may see, with the rights they hold on it."""

    owner: AccountId
    info: MailboxInfo
    name: MailboxName  # as the user sees it
    rights: Rights

    @property
    def id(self) -> MailboxId:
        return self.info.id


@dataclass(frozen=True, slots=True)
class VisibleMailbox:
    """One entry of :meth:`MailboxAccess.list_visible`."""

    name: MailboxName
    opened: OpenedMailbox


def flag_rights(flags: Iterable[str], rights: Rights) -> Flags:
    """The subset of ``flags`` the holder of ``rights`` may set or clear."""
    out = set()
    for f in flags:
        need = "s" if f == SEEN else "t" if f == DELETED else "w"
        if need in rights:
            out.add(f)
    return frozenset(out)


class MailboxAccess:
    """One actor's view of the store: namespaces mapped, rights enforced (module docstring).

    Every method raises StoreError: NOT_FOUND for a mailbox that does not exist or that the
    actor may not see, NO_PERM for a missing right, and whatever the backend raises.
    """

    def __init__(self, backend: Backend, actor: AccountInfo, *, allow_anyone: bool = True) -> None:
        self.backend = backend
        self.actor = actor
        #: ``[acl] allow_anyone``: may a non-manager grant rights to anyone/authenticated?
        self.allow_anyone = allow_anyone
        self._public: AccountInfo | None = None

    async def public(self) -> AccountInfo:
        if self._public is None:
            self._public = await self.backend.public_account()
        return self._public

    # --- names ----------------------------------------------------------------------------

    async def locate(self, name: MailboxName) -> Location:
        """Map a user-visible name to its tree. Raises NOT_FOUND for a namespace root or an
        unknown user (indistinguishable from a missing mailbox)."""
        if name.startswith(OTHER_USERS):
            user, sep, rest = name[len(OTHER_USERS) :].partition(DELIMITER)
            if not sep or not rest:
                raise _not_found()
            try:
                owner = await self.backend.get_account(user)
            except StoreError as exc:
                if exc.kind is ErrorKind.NOT_FOUND:
                    raise _not_found() from None
                raise
            if owner.id == (await self.public()).id:
                raise _not_found()
            return Location(owner.id, mailbox_name(rest), f"{OTHER_USERS}{owner.name}/")
        if name.startswith(PUBLIC):
            rest = name[len(PUBLIC) :]
            return Location((await self.public()).id, mailbox_name(rest), PUBLIC)
        if name in (OTHER_USERS.rstrip(DELIMITER), PUBLIC.rstrip(DELIMITER)):
            raise StoreError(ErrorKind.NOT_POSSIBLE, "That name is reserved for a namespace")
        return Location(self.actor.id, name, "")

    async def rights_on(self, owner: AccountId, mailbox: MailboxId) -> Rights:
        """The actor's rights on a mailbox (managers own the public tree)."""
        if owner == self.actor.id:
            return Rights.all()
        if self.actor.manager and owner == (await self.public()).id:
            return Rights.all()
        return await myrights(self.backend, self.actor, owner, mailbox)

    async def open(self, name: MailboxName, need: str = "") -> OpenedMailbox:
        """The mailbox ``name`` if the actor holds ``l`` and every right in ``need``."""
        loc = await self.locate(name)
        return await self._open_at(loc, loc.local, need)

    async def _open_at(self, loc: Location, local: MailboxName, need: str) -> OpenedMailbox:
        try:
            info = await self.backend.get_mailbox(loc.owner, local)
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                raise _not_found() from None
            raise
        rights = await self.rights_on(loc.owner, info.id)
        if "l" not in rights:
            raise _not_found()
        for right in need:
            if right not in rights:
                raise _no_perm(right)
        return OpenedMailbox(loc.owner, info, loc.visible(info.name), rights)

    async def list_visible(self) -> list[VisibleMailbox]:
        """Every mailbox the actor holds ``l`` on, sorted by visible name."""
        out: list[VisibleMailbox] = []
        for info in await self.backend.list_mailboxes(self.actor.id):
            opened = OpenedMailbox(self.actor.id, info, info.name, Rights.all())
            out.append(VisibleMailbox(info.name, opened))
        public = await self.public()
        for info in await self.backend.list_mailboxes(public.id):
            rights = await self.rights_on(public.id, info.id)
            if "l" in rights:
                name = MailboxName(PUBLIC + info.name)
                out.append(VisibleMailbox(name, OpenedMailbox(public.id, info, name, rights)))
        idents = [self.actor.name, ANYONE, AUTHENTICATED]
        shared = await self.backend.shared_with(idents)
        trees: dict[AccountId, tuple[AccountInfo, dict[MailboxId, MailboxInfo]]] = {}
        for owner, mailbox in shared:
            if owner in (self.actor.id, public.id):
                continue
            if owner not in trees:
                try:
                    account = await self.backend.get_account_by_id(owner)
                    tree = await self.backend.list_mailboxes(owner)
                except StoreError as exc:
                    if exc.kind is ErrorKind.NOT_FOUND:
                        continue
                    raise
                trees[owner] = (account, {b.id: b for b in tree})
            account, boxes = trees[owner]
            found = boxes.get(mailbox)
            if found is None:
                continue
            rights = await self.rights_on(owner, found.id)
            if "l" in rights:
                name = MailboxName(f"{OTHER_USERS}{account.name}/{found.name}")
                out.append(VisibleMailbox(name, OpenedMailbox(owner, found, name, rights)))
        out.sort(key=lambda v: v.name)
        return out

    # --- mailboxes ------------------------------------------------------------------------

    async def create(self, name: MailboxName, *, special_use: str = "") -> MailboxInfo:
        """CREATE: in another tree, ``k`` on the nearest existing parent is needed."""
        loc = await self.locate(name)
        if loc.owner != self.actor.id and not (
            self.actor.manager and loc.owner == (await self.public()).id
        ):
            parent = None
            for candidate in reversed(parents(loc.local)):
                try:
                    parent = await self.backend.get_mailbox(loc.owner, candidate)
                    break
                except StoreError as exc:
                    if exc.kind is not ErrorKind.NOT_FOUND:
                        raise
            if parent is None:
                raise _no_perm("k")
            rights = await self.rights_on(loc.owner, parent.id)
            if "l" not in rights and loc.prefix != PUBLIC:
                raise _no_perm("k")
            if "k" not in rights:
                raise _no_perm("k")
        return await self.backend.create_mailbox(loc.owner, loc.local, special_use=special_use)

    async def delete(self, name: MailboxName) -> None:
        """DELETE needs ``x`` (RFC 4314 §4)."""
        opened = await self.open(name, "x")
        loc = await self.locate(name)
        await self.backend.delete_mailbox(opened.owner, loc.local)

    async def rename(self, old: MailboxName, new: MailboxName) -> None:
        """RENAME needs ``x`` on the old name and ``k`` on the new parent, in one tree."""
        await self.open(old, "x")
        src, dst = await self.locate(old), await self.locate(new)
        if src.owner != dst.owner:
            raise StoreError(
                ErrorKind.NOT_POSSIBLE, "Cannot rename a mailbox into another namespace"
            )
        if dst.owner != self.actor.id:
            rights = Rights()
            for candidate in reversed(parents(dst.local)):
                try:
                    parent = await self.backend.get_mailbox(dst.owner, candidate)
                except StoreError as exc:
                    if exc.kind is not ErrorKind.NOT_FOUND:
                        raise
                    continue
                rights = await self.rights_on(dst.owner, parent.id)
                break
            else:
                if self.actor.manager and dst.owner == (await self.public()).id:
                    rights = Rights.all()
            if "k" not in rights:
                raise _no_perm("k")
        await self.backend.rename_mailbox(src.owner, src.local, dst.local)

    async def subscribe(self, name: MailboxName, on: bool) -> None:
        """Subscriptions are the actor's own, by visible name; SUBSCRIBE needs the mailbox
        to be visible, UNSUBSCRIBE does not (RFC 9051 §6.3.7-8)."""
        if on:
            await self.open(name)
        await self.backend.set_subscribed(self.actor.id, name, on)

    async def subscriptions(self) -> list[MailboxName]:
        return await self.backend.list_subscriptions(self.actor.id)

    async def status(self, opened: OpenedMailbox) -> MailboxStatus:
        if "r" not in opened.rights:
            raise _no_perm("r")
        return await self.backend.mailbox_status(opened.owner, opened.id)

    # --- messages -------------------------------------------------------------------------

    async def append(
        self,
        opened: OpenedMailbox,
        staged: StagedMessage,
        *,
        flags: Flags,
        internal_date: dt.datetime | None,
    ) -> AppendResult:
        """APPEND needs ``i``; flags the actor may not set are dropped."""
        if "i" not in opened.rights:
            raise _no_perm("i")
        return await self.backend.append(
            opened.owner,
            opened.id,
            staged,
            flags=flag_rights(flags, opened.rights),
            internal_date=internal_date,
        )

    async def store_flags(
        self,
        opened: OpenedMailbox,
        uids: UidSet,
        op: FlagOp,
        flags: Flags,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> StoreFlagsResult:
        """STORE: never changes a flag the actor lacks the right for (RFC 4314 §4)."""
        rights = opened.rights
        if not any(r in rights for r in "swt"):
            raise _no_perm("w")
        if all(r in rights for r in "swt") or op is not FlagOp.REPLACE:
            allowed = flags if all(r in rights for r in "swt") else flag_rights(flags, rights)
            if not allowed and op is not FlagOp.REPLACE:
                return StoreFlagsResult((), UidSet())
            return await self.backend.store_flags(
                opened.owner, opened.id, uids, op, allowed, unchanged_since=unchanged_since
            )
        # FLAGS (replace) with some rights missing: per message, replace only what may change.
        metas = await self.backend.fetch_meta(opened.owner, opened.id, uids, Want.FLAGS)
        updated = []
        modified: list[int] = []
        for meta in metas:
            kept = meta.flags - flag_rights(meta.flags, rights)
            target = kept | flag_rights(flags, rights)
            if target == meta.flags:
                continue
            one = UidSet.from_uids([meta.uid])
            adds = target - meta.flags
            removes = meta.flags - target
            result = None
            if adds:
                result = await self.backend.store_flags(
                    opened.owner,
                    opened.id,
                    one,
                    FlagOp.ADD,
                    adds,
                    unchanged_since=unchanged_since,
                )
                modified.extend(result.modified)
            if removes and (result is None or not result.modified):
                result = await self.backend.store_flags(
                    opened.owner,
                    opened.id,
                    one,
                    FlagOp.REMOVE,
                    removes,
                    unchanged_since=None if adds else unchanged_since,
                )
                modified.extend(result.modified)
            if result is not None and result.updated:
                updated.append(result.updated[-1])
        return StoreFlagsResult(tuple(updated), UidSet.from_uids(modified))

    async def copy(
        self, source: OpenedMailbox, uids: UidSet, dest: MailboxName, *, move: bool = False
    ) -> tuple[OpenedMailbox, CopyResult]:
        """COPY needs ``i`` on the destination; MOVE also ``t`` and ``e`` on the source."""
        if move:
            for right in "te":
                if right not in source.rights:
                    raise _no_perm(right)
        target = await self.open(dest, "i")
        op = self.backend.move if move else self.backend.copy
        result = await op(source.owner, source.id, uids, target.owner, target.id)
        return target, result

    async def expunge(self, opened: OpenedMailbox, uids: UidSet | None) -> list[int]:
        """EXPUNGE needs ``e``."""
        if "e" not in opened.rights:
            raise _no_perm("e")
        return list(await self.backend.expunge(opened.owner, opened.id, uids))

    # --- acl ------------------------------------------------------------------------------

    async def get_acl(self, name: MailboxName) -> dict[str, Rights]:
        opened = await self.open(name, "a")
        return await self.backend.get_acl(opened.owner, opened.id)

    async def set_acl(self, name: MailboxName, identifier: str, change: str) -> None:
        """SETACL: ``change`` is ``+rights``, ``-rights`` or ``rights`` (RFC 4314 §3.1)."""
        opened = await self.open(name, "a")
        ident = validate_identifier(identifier)
        if (
            not self.allow_anyone
            and not self.actor.manager
            and ident.removeprefix("-") in (ANYONE, AUTHENTICATED)
        ):
            raise StoreError(
                ErrorKind.NO_PERM, f"Sharing with {ident!r} is disabled by the server policy"
            )
        acl = await self.backend.get_acl(opened.owner, opened.id)
        current = acl.get(ident, Rights())
        await self.backend.set_acl(opened.owner, opened.id, ident, modify_rights(current, change))

    async def delete_acl(self, name: MailboxName, identifier: str) -> None:
        opened = await self.open(name, "a")
        await self.backend.delete_acl(opened.owner, opened.id, validate_identifier(identifier))

    async def listrights(self, name: MailboxName, identifier: str) -> ListRights:
        opened = await self.open(name, "a")
        return await listrights(self.backend, opened.owner, opened.id, identifier)

    async def myrights(self, name: MailboxName) -> Rights:
        return (await self.open(name)).rights

    # --- quota ----------------------------------------------------------------------------

    async def quota_root(self, name: MailboxName) -> QuotaInfo:
        """GETQUOTAROOT: the quota of the tree the mailbox lives in."""
        opened = await self.open(name)
        return await self.backend.get_quota(opened.owner)

    async def _root_owner(self, root: str) -> AccountId:
        if root == PUBLIC_QUOTA_ROOT:
            return (await self.public()).id
        if root.casefold() == self.actor.name.casefold():
            return self.actor.id
        if self.actor.manager:
            try:
                return (await self.backend.get_account(root)).id
            except StoreError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
        raise StoreError(ErrorKind.NOT_FOUND, "No such quota root")

    async def get_quota(self, root: str) -> QuotaInfo:
        return await self.backend.get_quota(await self._root_owner(root))

    async def set_quota(
        self, root: str, *, storage_limit_kib: int | None, message_limit: int | None
    ) -> QuotaInfo:
        """SETQUOTA is for managers only (RFC 9208 §4.4 leaves the policy to the server)."""
        if not self.actor.manager:
            raise StoreError(ErrorKind.NO_PERM, "Only managers may change quotas")
        owner = await self._root_owner(root)
        return await self.backend.set_quota(
            owner, storage_limit_kib=storage_limit_kib, message_limit=message_limit
        )


__all__ = [
    "OTHER_USERS",
    "PUBLIC",
    "PUBLIC_QUOTA_ROOT",
    "Location",
    "MailboxAccess",
    "OpenedMailbox",
    "VisibleMailbox",
    "flag_rights",
    "listrights",
    "myrights",
    "rights_for",
]
