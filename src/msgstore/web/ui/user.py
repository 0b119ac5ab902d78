"""The user pages: log in and out, change the password, usage, and (POP-only accounts) the
messages of the maildrop.

Every figure comes from a management operation run as the logged-in account with
``Access.SELF`` (``quota show``, ``mailbox list``, ``forward account show``, ``password
set``...), so the one permission check decides, and no page can show one user another user's
data: the account name is always the session's, never a value from the request. Two things
are not operations: the last logins (``Backend.last_logins``, the account's own) and the
messages of a POP-only account, which the page reads and deletes through the storage
interface as the POP3 server does, and shows MIME-decoded (mailview.py): its text, its
attachments to download, and its source.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId, Uid, UidSet
from msgstore.core.names import INBOX
from msgstore.management.operation import Access, OperationSpec, Secret
from msgstore.mime.headers import decode_words, read_fields
from msgstore.storage.base import MessageMeta, Want
from msgstore.web.ui import csrf, mailview
from msgstore.web.ui.forms import FormError, build_operation
from msgstore.web.ui.sessions import client_address
from msgstore.web.ui.site import MenuItem, Site, View

#: The one message shown for a failed login, whether or not the account exists.
LOGIN_FAILED: Final = "The account name or the password is wrong."
#: Octets of a message's source shown on the page; the rest is cut (a maildrop, not a mail
#: reader). A message larger than ``[web] max_decoded_message`` is shown this way too.
MAX_SHOWN_OCTETS: Final = 1024 * 1024
#: The headers of a downloaded attachment: never rendered by the browser, whatever it holds.
ATTACHMENT_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
}
#: Octets read from each listed message for its Subject and From.
HEAD_OCTETS: Final = 16 * 1024
#: Messages listed on one page of the POP-only message list.
MESSAGES_PER_PAGE: Final = 50


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One message of a POP-only maildrop as the list shows it (decoded header fields)."""

    uid: int
    date: dt.datetime
    size: int
    subject: str
    sender: str


def summary(meta: MessageMeta, head: bytes) -> MessageSummary:
    """Subject and From decoded from the first octets of the message (RFC 2047 words)."""
    block = head.split(b"\r\n\r\n", 1)[0]
    fields = read_fields(block)
    subject, sender = fields.get("subject"), fields.get("from")
    return MessageSummary(
        uid=int(meta.uid),
        date=meta.internal_date,
        size=meta.size,
        subject="" if subject is None else decode_words(subject),
        sender="" if sender is None else decode_words(sender),
    )


def _safe_next(target: str | None) -> str:
    """Only local absolute paths: never ``//host`` or a scheme (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def routes(site: Site) -> list[BaseRoute]:
    backend = site.ctx.backend
    site.register(MenuItem("usage", "Usage", "/usage", "user", ("quota show", "mailbox list")))
    site.register(MenuItem("messages", "Messages", "/messages", "pop"))
    site.register(MenuItem("password", "Password", "/password", "user", ("password set",)))

    # --- login / logout -------------------------------------------------------------------

    def login_form(view: View, *, error: str = "", name: str = "", status: int = 200) -> Response:
        token = csrf.new_token()
        response = site.render(
            view,
            "login.html",
            status=status,
            error=error,
            name=name,
            login_token=token,
            next=_safe_next(view.request.query_params.get("next") or view.form.get("next")),
        )
        response.set_cookie(
            csrf.LOGIN_COOKIE,
            token,
            max_age=3600,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=site.sessions_secure(view.request),
        )
        return response

    async def login_page(request: Request, view: View) -> Response:
        if request.method == "GET":
            if view.session is not None:
                return site.redirect("/")
            return login_form(view)
        name = view.form.get("name", "").strip()
        password = view.form.get("password", "")
        try:
            if len(name) > 255 or len(password) > 1024:
                raise StoreError(ErrorKind.AUTH_FAILED, LOGIN_FAILED)
            account = await site.ctx.auth.check_password(name, password, client_address(request))
        except StoreError as exc:
            if exc.kind in (ErrorKind.TEMP, ErrorKind.UNAVAILABLE):
                raise
            # AUTH_FAILED, DISABLED, PARAMS: one message, so the page tells nobody which
            # names exist or are disabled.
            return login_form(view, error=LOGIN_FAILED, name=name, status=401)
        await site.ctx.auth.logins.flush()
        started = await site.sessions.start(request, account)
        response = site.redirect(_safe_next(view.form.get("next")))
        site.sessions.set_cookie(request, response, started.cookie)
        response.delete_cookie(csrf.LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: Request, view: View) -> Response:
        await site.sessions.end(request)
        response = site.redirect("/login")
        site.sessions.clear_cookie(request, response)
        return response

    async def home(request: Request, view: View) -> Response:
        menu = site.menu(view.session)
        return site.redirect(menu[0].path if menu else "/usage")

    # --- usage ----------------------------------------------------------------------------

    async def usage(request: Request, view: View) -> Response:
        name = view.account_name
        quota = await site.run(view, site.spec("quota show").build({"user": name}))
        mailboxes = await site.run(view, site.spec("mailbox list").build({"user": name}))
        assert view.session is not None
        logins = await backend.last_logins(view.session.account.id, limit=20)
        forwarding: object = None
        forward_op = _self_forward_op(site)
        if forward_op is not None:
            spec, field = forward_op
            forwarding = await site.run(view, spec.build({field: name}))
        return site.render(
            view,
            "usage.html",
            title="Usage",
            quota=quota,
            mailboxes=mailboxes,
            logins=logins,
            forwarding=forwarding,
            has_forwarding=forward_op is not None,
        )

    # --- password -------------------------------------------------------------------------

    async def password(request: Request, view: View) -> Response:
        spec = site.spec("password set")
        policy = site.password_policy_text()
        if request.method == "GET":
            return site.render(
                view, "password.html", title="Password", errors={}, done=False, policy=policy
            )
        assert view.session is not None
        form = view.form
        old, new, again = form.get("old", ""), form.get("new", ""), form.get("again", "")
        errors: dict[str, str] = {}
        if not old:
            errors["old"] = "Enter your current password."
        if not new:
            errors["new"] = "Enter a new password."
        elif new != again:
            errors["again"] = "The new passwords do not match."
        if not errors:
            try:
                await site.ctx.auth.check_password(view.account_name, old, client_address(request))
            except StoreError as exc:
                if exc.kind in (ErrorKind.TEMP, ErrorKind.UNAVAILABLE):
                    raise
                errors["old"] = "The current password is wrong."
        if not errors:
            try:
                op = build_operation(
                    spec, {}, {"name": view.account_name, "password": Secret(new)}
                )
                await site.run(view, op)
            except StoreError as exc:
                if exc.kind is not ErrorKind.PARAMS:
                    raise
                errors["new"] = exc.public
            except FormError as exc:  # the operation's own reason (hard limits)
                errors["new"] = exc.message
        if errors:
            return site.render(
                view,
                "password.html",
                title="Password",
                errors=errors,
                done=False,
                policy=policy,
                status=422,
            )
        # The change ended every session of the account, this one too: start a new one.
        started = await site.sessions.start(request, view.session.account)
        view.session = started.session
        response = site.render(
            view, "password.html", title="Password", errors={}, done=True, policy=policy
        )
        site.sessions.set_cookie(request, response, started.cookie)
        return response

    # --- the maildrop of a POP-only account -----------------------------------------------

    async def inbox_of(view: View) -> tuple[AccountId, MailboxId]:
        assert view.session is not None
        account = view.session.account
        mailbox = await backend.get_mailbox(account.id, INBOX)
        return account.id, mailbox.id

    async def messages(request: Request, view: View) -> Response:
        account, mailbox = await inbox_of(view)
        metas = await backend.fetch_meta(account, mailbox, UidSet.all(), Want.FLAGS)
        metas.reverse()  # newest first
        try:
            page = max(1, int(request.query_params.get("page", "1")[:6]))
        except ValueError:
            page = 1
        pages = max(1, -(-len(metas) // MESSAGES_PER_PAGE))
        page = min(page, pages)
        shown = []
        for meta in metas[(page - 1) * MESSAGES_PER_PAGE : page * MESSAGES_PER_PAGE]:
            try:
                async with backend.open_body(account, mailbox, meta.uid) as body:
                    head = await body.read(0, min(body.size, HEAD_OCTETS))
            except StoreError as exc:
                if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.EXPUNGED):
                    raise
                continue
            shown.append(summary(meta, head))
        return site.render(
            view,
            "messages.html",
            title="Messages",
            messages=shown,
            total=len(metas),
            total_octets=sum(m.size for m in metas),
            page=page,
            pages=pages,
            notice=request.query_params.get("deleted") and "The message was deleted.",
        )

    def _uid(request: Request) -> Uid:
        raw = str(request.path_params["uid"])
        if not raw.isdigit() or len(raw) > 10 or int(raw) < 1 or int(raw) > 0xFFFFFFFF:
            raise StoreError(ErrorKind.NOT_FOUND, "No such message")
        return Uid(int(raw))

    async def read_message(view: View, uid: Uid, limit: int) -> tuple[MessageMeta, bytes]:
        """The message's metadata and its first ``limit`` octets; NOT_FOUND if it is gone."""
        account, mailbox = await inbox_of(view)
        metas = await backend.fetch_meta(account, mailbox, UidSet.from_uids([uid]), Want.FLAGS)
        if not metas:
            raise StoreError(ErrorKind.NOT_FOUND, "No such message")
        try:
            async with backend.open_body(account, mailbox, uid) as body:
                data = await body.read(0, min(body.size, limit))
        except StoreError as exc:
            if exc.kind in (ErrorKind.NOT_FOUND, ErrorKind.EXPUNGED):
                raise StoreError(ErrorKind.NOT_FOUND, "No such message") from exc
            raise
        return metas[0], data

    def gone(view: View) -> Response:
        return site.error_page(view, 404, "Not found", "There is no such message.")

    async def message(request: Request, view: View) -> Response:
        limit = site.config.web.max_decoded_message
        try:
            meta, data = await read_message(view, _uid(request), max(limit, MAX_SHOWN_OCTETS))
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            return gone(view)
        if meta.size > limit:  # too large to decode here: its first megabyte, raw
            return show_source(view, meta, data)
        decoded = await asyncio.to_thread(mailview.decode, data)
        return site.render(
            view,
            "message.html",
            title=decoded.subject or "Message",
            meta=summary(meta, data[:HEAD_OCTETS]),
            message=decoded,
        )

    def show_source(view: View, meta: MessageMeta, data: bytes) -> Response:
        return site.render(
            view,
            "source.html",
            title="Message source",
            meta=summary(meta, data[:HEAD_OCTETS]),
            text=data[:MAX_SHOWN_OCTETS].decode("utf-8", "replace"),
            cut=meta.size > MAX_SHOWN_OCTETS,
            decoded=meta.size <= site.config.web.max_decoded_message,
        )

    async def source(request: Request, view: View) -> Response:
        try:
            meta, data = await read_message(view, _uid(request), MAX_SHOWN_OCTETS)
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            return gone(view)
        return show_source(view, meta, data)

    async def part(request: Request, view: View) -> Response:
        raw = str(request.path_params["part"])
        limit = site.config.web.max_decoded_message
        try:
            if not raw.isdigit() or len(raw) > 6:
                raise StoreError(ErrorKind.NOT_FOUND, "No such part")
            meta, data = await read_message(view, _uid(request), limit)
            found = None
            if meta.size <= limit:
                found = await asyncio.to_thread(mailview.part_of, data, int(raw))
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            found = None
        if found is None:
            return site.error_page(view, 404, "Not found", "There is no such attachment.")
        filename, content = found
        fallback = "".join(
            c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
        )
        disposition = (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
        )
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Content-Disposition": disposition, **ATTACHMENT_HEADERS},
        )

    async def delete_message(request: Request, view: View) -> Response:
        account, mailbox = await inbox_of(view)
        uid = _uid(request)
        await backend.expunge(account, mailbox, UidSet.from_uids([uid]), only_deleted=False)
        return site.redirect("/messages?deleted=1")

    return [
        Route("/", site.page("user", home), methods=["GET"]),
        Route("/login", site.page("login", login_page), methods=["GET", "POST"]),
        Route("/logout", site.page("user", logout), methods=["POST"]),
        Route("/usage", site.page("user", usage), methods=["GET"]),
        Route("/password", site.page("user", password), methods=["GET", "POST"]),
        Route("/messages", site.page("pop", messages), methods=["GET"]),
        Route("/messages/{uid}", site.page("pop", message), methods=["GET"]),
        Route("/messages/{uid}/source", site.page("pop", source), methods=["GET"]),
        Route("/messages/{uid}/parts/{part}", site.page("pop", part), methods=["GET"]),
        Route("/messages/{uid}/delete", site.page("pop", delete_message), methods=["POST"]),
    ]


def fallback(site: Site) -> list[BaseRoute]:
    """The last route of all: a 404 page with the menu and the security headers."""

    async def not_found(request: Request, view: View) -> Response:
        return site.error_page(view, 404, "Not found", "There is no such page.")

    return [Route("/{path:path}", site.page("login", not_found), methods=["GET"])]


def _self_forward_op(site: Site) -> tuple[OperationSpec, str] | None:
    """``forward account show`` and the field naming the account, when users may run it on
    their own addresses (``Access.SELF``); None otherwise, and the usage page has no
    forwarding section."""
    if not site.has_op("forward account show"):
        return None
    spec = site.spec("forward account show")
    if spec.access is not Access.SELF:
        return None
    return spec, spec.self_field
