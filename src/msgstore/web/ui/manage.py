"""The management pages (manager privilege): built from the operations that exist.

Most pages have one shape, :class:`ManagedPage`: a table from a listing operation, forms for
operations that add things, and buttons per row for operations on one row (retry, delete,
disconnect...). Forms and buttons are generated from the operations' declared parameters
(forms.py), and a POST names the operation it runs (field ``op``), which must be one of the
page's: a page cannot be made to run anything else. Every run goes through
``run_operation`` as the manager (permission check, audit log). A page whose listing
operation does not exist in this build is not registered, so it is neither in the menu nor
reachable.

Operations marked ``confirm`` (they destroy data) need the "Yes, really" checkbox ticked.

The accounts pages and the dashboard have their own handlers (search and paging, the account
detail with its forms, the panels).
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote, urlencode

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import OperationSpec
from msgstore.web.ui.forms import FormError, build_operation, fields_of, result_rows
from msgstore.web.ui.site import MenuItem, Site, View

#: Accounts listed per page.
ACCOUNTS_PER_PAGE: Final = 25
#: HTTP status of an operation's failure, by kind (the page shows the message).
_STATUS: Final = {
    ErrorKind.PARAMS: 422,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.EXISTS: 409,
    ErrorKind.IN_USE: 409,
    ErrorKind.HAS_CHILDREN: 409,
    ErrorKind.NOT_POSSIBLE: 409,
    ErrorKind.NO_PERM: 403,
}


@dataclass(frozen=True, slots=True)
class RowAction:
    """A button on each row: runs ``op`` with fields taken from the row."""

    op: str
    label: str
    key: Mapping[str, str]  # operation field -> row field


@dataclass(frozen=True, slots=True)
class ManagedPage:
    """A management page of the common shape (module docstring)."""

    name: str
    title: str
    path: str
    listing: str
    forms: tuple[str, ...] = ()
    actions: tuple[RowAction, ...] = ()
    #: Row fields shown as columns (None: all).
    columns: tuple[str, ...] | None = None
    intro: str = ""
    #: Operations whose result the page shows (above the table) instead of redirecting.
    shown: frozenset[str] = frozenset()


#: The pages of the common shape; each appears when its listing operation exists.
PAGES: Final = (
    ManagedPage(
        name="forwarding",
        title="Forwarding",
        path="/manage/forwarding",
        listing="forward list",
        forms=("forward add",),
        actions=(RowAction("forward delete", "Delete", {"address": "address"}),),
        intro="Mail for an address is sent to its destinations instead of (or besides, with "
        "a copy kept) the account of that name.",
    ),
    ManagedPage(
        name="queue",
        title="Relay queue",
        path="/manage/queue",
        listing="queue list",
        forms=("queue flush",),
        actions=(
            RowAction("queue show", "Show", {"id": "queue_id"}),
            RowAction("queue retry", "Retry now", {"id": "queue_id"}),
            RowAction("queue delete", "Delete", {"id": "queue_id"}),
        ),
        shown=frozenset({"queue show"}),
        intro="Forwarded mail for external addresses waiting for the smarthost.",
    ),
    ManagedPage(
        name="sessions",
        title="Live sessions",
        path="/manage/sessions",
        listing="session list",
        actions=(RowAction("session kill", "Disconnect", {"id": "session_id"}),),
        intro="IMAP, POP3 and other connections open now.",
    ),
    ManagedPage(
        name="public",
        title="Public folders",
        path="/manage/public",
        listing="public list",
        forms=("public create", "public acl set", "public acl delete", "public owner"),
        actions=(RowAction("public delete", "Delete", {"name": "name"}),),
        intro="Folders under Public/ and who may use them (IMAP ACL rights, RFC 4314).",
    ),
    ManagedPage(
        name="audit",
        title="Audit log",
        path="/manage/audit",
        listing="audit list",
        intro="Every management operation, by whom, from where, and how it ended.",
    ),
)


#: Operations whose result the account page shows instead of redirecting (a generated
#: password is shown once; a reconstruct report is read).
SHOWN_RESULTS: Final = frozenset({"password reset", "account reconstruct"})
#: Short titles of forms (the operation's summary is shown under it).
FORM_TITLES: Final = {
    "account add": "New account",
    "account modify": "Change settings",
    "account rename": "Rename",
    "account delete": "Delete account",
    "quota set": "Set quota",
    "password set": "Set password",
    "password reset": "Reset password",
    "account reconstruct": "Reconstruct",
    "forward add": "Add forwarding",
    "queue flush": "Retry all now",
    "queue show": "Queued message",
    "public create": "New public folder",
    "acl set": "Share a folder",
    "acl delete": "Stop sharing",
    "public acl set": "Set rights",
    "public acl delete": "Remove rights",
    "public owner": "Give an owner",
}


def _status(exc: StoreError) -> int:
    return _STATUS.get(
        exc.kind, 503 if exc.kind in (ErrorKind.TEMP, ErrorKind.UNAVAILABLE) else 500
    )


@dataclass(frozen=True, slots=True)
class FormView:
    """One operation form as the templates render it."""

    op: str
    title: str
    help: str
    fields: list[object]
    confirm: bool
    hidden: Mapping[str, str]


def form_view(
    site: Site,
    name: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    fixed: Mapping[str, str] | None = None,
    title: str = "",
) -> FormView:
    spec = site.spec(name)
    hidden = dict(fixed or {})
    return FormView(
        op=name,
        title=title or FORM_TITLES.get(name, name.capitalize()),
        help=" ".join(spec.doc.split("\n\n")[0].replace("``", "").split()),
        fields=list(fields_of(spec, values=values, errors=errors, omit=frozenset(hidden))),
        confirm=spec.confirm,
        hidden=hidden,
    )


async def run_form(
    site: Site,
    view: View,
    allowed: Sequence[str],
    fixed_fields: Mapping[str, object] | None = None,
    confirm: frozenset[str] = frozenset(),
) -> tuple[str, object, FormError | StoreError | None]:
    """Run the operation the POSTed form names; (op, result, error).

    Operations marked ``confirm``, and those in ``confirm``, need the confirmation box.
    """
    name = view.form.get("op", "")
    if name not in allowed or not site.has_op(name):
        return name, None, StoreError(ErrorKind.PARAMS, "This page cannot run that.")
    spec: OperationSpec = site.spec(name)
    if (spec.confirm or name in confirm) and view.form.get("confirm") != "yes":
        return name, None, FormError({}, "Tick “Yes, really” to confirm.")
    try:
        op = build_operation(spec, view.form, fixed_fields)
        return name, await site.run(view, op), None
    except FormError as exc:
        return name, None, exc
    except StoreError as exc:
        if exc.kind in (ErrorKind.TEMP, ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL):
            raise
        return name, None, exc


def _done(path: str, op: str) -> Response:
    return Site.redirect(f"{path}?{urlencode({'done': op})}")


def managed_routes(site: Site, page: ManagedPage) -> list[BaseRoute]:
    forms = tuple(f for f in page.forms if site.has_op(f))
    actions = tuple(a for a in page.actions if site.has_op(a.op))
    allowed = forms + tuple(a.op for a in actions)
    # Buttons that remove something ask first, like the operations declared ``confirm``.
    confirm = frozenset(
        a.op for a in actions if site.spec(a.op).confirm or a.op.endswith(("delete", "kill"))
    )
    template = f"manage/{page.name}.html"

    async def handler(request: Request, view: View) -> Response:
        error: FormError | StoreError | None = None
        failed_op = ""
        shown: dict[str, object] | None = None
        if request.method == "POST":
            failed_op, result, error = await run_form(site, view, allowed, confirm=confirm)
            if error is None and failed_op in page.shown:
                shown = result_rows(result)[0]
            elif error is None:
                return _done(page.path, failed_op)
        query = {k: v for k, v in request.query_params.items() if k in _listing_fields(site, page)}
        listing = site.spec(page.listing)
        try:
            op = build_operation(listing, query)
            rows = result_rows(await site.run(view, op))
        except FormError as exc:
            rows, error = [], exc
        columns = page.columns or (tuple(rows[0]) if rows else ())
        form_views = [
            form_view(
                site,
                name,
                values=view.form if name == failed_op else None,
                errors=error.fields
                if isinstance(error, FormError) and name == failed_op
                else None,
            )
            for name in forms
        ]
        status = 200
        if isinstance(error, StoreError):
            status = _status(error)
        elif isinstance(error, FormError):
            status = 422
        return site.render(
            view,
            site.template_for(template, "manage/page.html"),
            status=status,
            title=page.title,
            page=page,
            rows=rows,
            columns=columns,
            forms=form_views,
            actions=actions,
            filters=[f for f in fields_of(listing, values=query) if f.widget != "password"],
            error=_message(error, with_fields=failed_op not in forms),
            result=shown,
            result_op=failed_op if shown is not None else "",
            result_title=FORM_TITLES.get(failed_op, failed_op.capitalize()),
            confirm_ops=confirm,
            done=request.query_params.get("done", "") if request.method == "GET" else "",
        )

    return [Route(page.path, site.page("manager", handler), methods=["GET", "POST"])]


def _listing_fields(site: Site, page: ManagedPage) -> set[str]:
    return {p.name for p in site.spec(page.listing).params}


def _message(error: FormError | StoreError | None, *, with_fields: bool = False) -> str:
    """The page's message for ``error``; ``with_fields`` when no form shows the fields'."""
    if error is None:
        return ""
    if isinstance(error, FormError):
        if with_fields and error.fields:
            return "; ".join(f"{name}: {reason}" for name, reason in error.fields.items())
        return error.message
    return error.public


# --- accounts ---------------------------------------------------------------------------------


def account_routes(site: Site) -> list[BaseRoute]:
    detail_forms = tuple(
        n
        for n in (
            "account modify",
            "quota set",
            "password reset",
            "password set",
            "acl set",
            "acl delete",
            "account rename",
            "account reconstruct",
            "account delete",
        )
        if site.has_op(n)
    )
    listing = site.spec("account list")
    pages_in_op = {"match", "limit", "offset"} <= {p.name for p in listing.params}

    async def accounts(request: Request, view: View) -> Response:
        error: FormError | StoreError | None = None
        if request.method == "POST":
            name, result, error = await run_form(site, view, ("account add",))
            if error is None:
                created = getattr(result, "name", "")
                return site.redirect(
                    f"/manage/accounts/{quote(str(created), safe='')}?done={quote(name)}"
                )
        search = request.query_params.get("q", "").strip()[:255]
        try:
            page = max(1, int(request.query_params.get("page", "1")[:6]))
        except ValueError:
            page = 1
        if pages_in_op:
            # One more than a page: tells whether there is a next page.
            op = listing.build(
                {
                    "match": search,
                    "limit": ACCOUNTS_PER_PAGE + 1,
                    "offset": (page - 1) * ACCOUNTS_PER_PAGE,
                }
            )
            found = await site.run(view, op)
            assert isinstance(found, list)
        else:
            everyone = await site.run(view, listing.build({}))
            assert isinstance(everyone, list)
            key = search.casefold()
            found = [a for a in everyone if key in a.name.casefold()]
            found = found[(page - 1) * ACCOUNTS_PER_PAGE : page * ACCOUNTS_PER_PAGE + 1]
        return site.render(
            view,
            "manage/accounts.html",
            status=_status(error) if isinstance(error, StoreError) else 422 if error else 200,
            title="Accounts",
            accounts=found[:ACCOUNTS_PER_PAGE],
            search=search,
            page=page,
            has_next=len(found) > ACCOUNTS_PER_PAGE,
            create=form_view(
                site,
                "account add",
                title="New account",
                values=view.form if error else None,
                errors=error.fields if isinstance(error, FormError) else None,
            ),
            error=_message(error),
            done=request.query_params.get("done", "") if request.method == "GET" else "",
        )

    async def account(request: Request, view: View) -> Response:
        name = str(request.path_params["name"])
        error: FormError | StoreError | None = None
        failed = ""
        report: object = None
        if request.method == "POST":
            fixed_field = _name_field(site, view.form.get("op", ""))
            failed, result, error = await run_form(
                site, view, detail_forms, {fixed_field: name} if fixed_field else None
            )
            if error is None:
                if failed == "account delete":
                    return site.redirect("/manage/accounts?done=account+delete")
                if failed == "account rename":
                    name = str(getattr(result, "name", name))
                if failed not in SHOWN_RESULTS:
                    return site.redirect(
                        f"/manage/accounts/{quote(name, safe='')}?done={quote(failed)}"
                    )
                report = result
        try:
            shown = await site.run(view, site.spec("account show").build({"name": name}))
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            return site.error_page(view, 404, "Not found", exc.public)
        mailboxes = await site.run(view, site.spec("mailbox list").build({"user": name}))
        assert isinstance(mailboxes, list)
        acls: dict[str, str] = {}
        if site.has_op("acl show"):
            for mailbox in mailboxes:
                show = site.spec("acl show").build({"user": name, "mailbox": mailbox.name})
                entries = await site.run(view, show)
                assert isinstance(entries, list)
                acls[mailbox.name] = ", ".join(f"{e.identifier}: {e.rights}" for e in entries)
        forms = []
        for op in detail_forms:
            field = _name_field(site, op)
            forms.append(
                form_view(
                    site,
                    op,
                    values=view.form if op == failed and error else None,
                    errors=error.fields if isinstance(error, FormError) and op == failed else None,
                    fixed={field: name} if field else None,
                )
            )
        status = 200
        if isinstance(error, StoreError):
            status = _status(error)
        elif isinstance(error, FormError):
            status = 422
        return site.render(
            view,
            "manage/account.html",
            status=status,
            title=f"Account {name}",
            shown=shown,
            mailboxes=mailboxes,
            acls=acls,
            forms=forms,
            error=_message(error),
            failed=failed,
            result=None if report is None else result_rows(report)[0],
            result_op=failed if report is not None else "",
            export=site.has_op("account export"),
            done=request.query_params.get("done", "") if request.method == "GET" else "",
        )

    site.register(
        MenuItem(
            "accounts",
            "Accounts",
            "/manage/accounts",
            "manager",
            ("account list", "account add", "account show"),
        )
    )
    export = (
        []
        if not site.has_op("account export")
        else [
            Route(
                "/manage/accounts/{name}/export",
                site.page("manager", lambda request, view: _export(site, request, view)),
                methods=["POST"],
            )
        ]
    )
    return [
        *export,
        Route("/manage/accounts", site.page("manager", accounts), methods=["GET", "POST"]),
        Route("/manage/accounts/{name}", site.page("manager", account), methods=["GET", "POST"]),
    ]


def _name_field(site: Site, op: str) -> str:
    """The field of ``op`` that names the account (``name`` or ``user``), or ""."""
    if not site.has_op(op):
        return ""
    names = [p.name for p in site.spec(op).params]
    for candidate in ("name", "user", "account"):
        if candidate in names:
            return candidate
    return ""


async def _export(site: Site, request: Request, view: View) -> Response:
    """Run ``account export`` into a temporary file and send it as a download."""
    name = str(request.path_params["name"])
    spool = Path(tempfile.mkdtemp(prefix="msgstore-export-"))
    target = spool / "export.tar"

    def cleanup() -> None:
        shutil.rmtree(spool, ignore_errors=True)

    try:
        op = site.spec("account export").build({"name": name, "output": str(target)})
        await site.run(view, op)
    except StoreError as exc:
        cleanup()
        if exc.kind is ErrorKind.NOT_FOUND:
            return site.error_page(view, 404, "Not found", exc.public)
        raise
    except BaseException:
        cleanup()
        raise
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name)[:100] or "account"
    return FileResponse(
        target,
        media_type="application/x-tar",
        filename=f"{safe}.tar",
        background=BackgroundTask(cleanup),
    )


# --- dashboard --------------------------------------------------------------------------------


def dashboard_routes(site: Site) -> list[BaseRoute]:
    async def dashboard(request: Request, view: View) -> Response:
        panels: list[tuple[str, object]] = []
        for panel in site.config.web.dashboard:
            data = await _panel(site, view, panel)
            if data is not None:
                panels.append((panel, data))
        return site.render(
            view,
            "manage/dashboard.html",
            title="Dashboard",
            panels=panels,
            now=dt.datetime.now(dt.UTC),
        )

    site.register(MenuItem("dashboard", "Dashboard", "/manage", "manager", ("account list",)))
    return [Route("/manage", site.page("manager", dashboard), methods=["GET"])]


@dataclass(frozen=True, slots=True)
class Chart:
    """A per-minute line chart as SVG coordinates (server-rendered: no script needed)."""

    width: int
    height: int
    lines: Mapping[str, str]  # series -> "x,y x,y ..." for <polyline points>
    totals: Mapping[str, int]
    peak: int
    start: dt.datetime
    end: dt.datetime


CHART_W: Final = 600
CHART_H: Final = 160


def minute_chart(minutes: Sequence[object], series: Sequence[str], now: dt.datetime) -> Chart:
    """The last 60 minutes up to ``now``; minutes without data count as zero."""
    end = now.replace(second=0, microsecond=0)
    start = end - dt.timedelta(minutes=59)
    values = {name: [0] * 60 for name in series}
    for entry in minutes:
        minute = getattr(entry, "minute", None)
        if not isinstance(minute, dt.datetime):
            continue
        index = int((minute - start).total_seconds() // 60)
        if 0 <= index < 60:
            for name in series:
                value = getattr(entry, name, 0)
                values[name][index] += value if isinstance(value, int) else 0
    peak = max([1, *(v for vs in values.values() for v in vs)])
    lines = {}
    for name, vs in values.items():
        points = (
            f"{round(i * CHART_W / 59, 1)},{round(CHART_H - v * (CHART_H - 8) / peak, 1)}"
            for i, v in enumerate(vs)
        )
        lines[name] = " ".join(points)
    totals = {name: sum(vs) for name, vs in values.items()}
    return Chart(CHART_W, CHART_H, lines, totals, peak, start, end)


async def _panel(site: Site, view: View, panel: str) -> object:
    """The data of one dashboard panel, or None when this build cannot fill it."""
    try:
        return await _panel_data(site, view, panel)
    except StoreError as exc:
        if exc.kind is not ErrorKind.UNAVAILABLE:
            raise
        return {"unavailable": exc.public}


async def _panel_data(site: Site, view: View, panel: str) -> object:
    if panel == "sessions" and site.has_op("session list"):
        live = await site.run(view, site.spec("session list").build({}))
        assert isinstance(live, list)
        by_protocol: dict[str, int] = {}
        for session in live:
            protocol = str(getattr(session, "protocol", ""))
            by_protocol[protocol] = by_protocol.get(protocol, 0) + 1
        return {"total": len(live), "by_protocol": sorted(by_protocol.items())}
    if panel == "activity" and site.has_op("stats live"):
        stats = await site.run(view, site.spec("stats live").build({}))
        minutes = getattr(stats, "minutes", [])
        return minute_chart(minutes, ("deliveries", "logins"), dt.datetime.now(dt.UTC))
    if panel == "errors" and site.has_op("audit list"):
        spec = site.spec("audit list")
        names = {p.name for p in spec.params}
        values: dict[str, object] = {}
        if "limit" in names:
            values["limit"] = 200
        records = await site.run(view, spec.build(values))
        assert isinstance(records, list)
        failed = [r for r in records if getattr(r, "outcome", "ok") != "ok"][:10]
        return {"records": failed}
    if panel == "queue" and site.has_op("queue list"):
        entries = await site.run(view, site.spec("queue list").build({}))
        assert isinstance(entries, list)
        return {"messages": len(entries), "octets": sum(getattr(e, "size", 0) for e in entries)}
    if panel == "storage" and site.has_op("stats show"):
        stats = await site.run(view, site.spec("stats show").build({}))
        return {
            "accounts": getattr(stats, "accounts", 0),
            "octets": getattr(stats, "octets", 0),
            "messages": getattr(stats, "messages", 0),
            "public_octets": getattr(stats, "public_octets", 0),
        }
    if panel == "storage":
        accounts = await site.run(view, site.spec("account list").build({}))
        assert isinstance(accounts, list)
        used = 0
        messages = 0
        for info in accounts:
            report = await site.run(view, site.spec("quota show").build({"user": info.name}))
            used += int(getattr(report, "storage_used_octets", 0))
            messages += int(getattr(report, "messages_used", 0))
        return {"accounts": len(accounts), "octets": used, "messages": messages}
    return None


def routes(site: Site) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    out += dashboard_routes(site)
    out += account_routes(site)
    for page in PAGES:
        site.register(MenuItem(page.name, page.title, page.path, "manager", (page.listing,)))
        if site.has_op(page.listing):
            out += managed_routes(site, page)
    return out
