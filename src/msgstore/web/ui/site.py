"""What every page shares: templates, sessions, the CSRF and permission checks, the menu,
the security headers, and running a management operation as the logged-in account.

Pages are small async functions ``(request, view) -> Response`` wrapped by :meth:`Site.page`,
which decides who may see them before they run:

    login        no session needed (the login page)
    user         any logged-in account
    pop          logged-in POP-only accounts (their messages)
    manager      accounts with the manager privilege; others get 403

Every POST must pass both CSRF checks (csrf.py) before the page runs. Every response carries
``Content-Security-Policy: default-src 'self'`` with no inline script or style (the pages
have none: colours come from /static/brand.css, bars are <meter>/<progress> or classes).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar
from urllib.parse import quote

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management import OPERATIONS, load_operations
from msgstore.management.operation import Actor, Operation, OperationSpec, run_operation
from msgstore.storage.base import WebSession
from msgstore.web.context import WebContext
from msgstore.web.ui import csrf
from msgstore.web.ui.dates import language_tag, negotiate
from msgstore.web.ui.render import make_environment
from msgstore.web.ui.sessions import SessionStore, client_address, secure_cookie

log = logging.getLogger(__name__)

Audience = Literal["login", "user", "pop", "manager"]

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The panels the dashboard knows (``[web] dashboard``).
DASHBOARD_PANELS: Final = ("sessions", "activity", "storage", "queue", "errors")
#: Largest form accepted (urlencoded), in octets; a password form is far smaller.
MAX_FORM_OCTETS: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class MenuItem:
    name: str
    title: str
    path: str
    audience: Audience
    #: Operations the page is built from; it is offered only when they all exist.
    needs: tuple[str, ...] = ()


@dataclass(slots=True)
class View:
    """One request as a page sees it."""

    request: Request
    session: WebSession | None
    form: Mapping[str, str] = field(default_factory=dict)

    @property
    def account_name(self) -> str:
        assert self.session is not None
        return self.session.account.name


_R = TypeVar("_R", bound=Response)
Handler = Callable[[Request, View], Awaitable[Response]]


class Site:
    """The shared machinery of the pages of one process."""

    def __init__(self, ctx: WebContext) -> None:
        load_operations()
        self.ctx = ctx
        self.config = ctx.config
        self.env = make_environment(ctx.config)
        self.sessions = SessionStore(ctx)
        self.pages: dict[str, MenuItem] = {}

    # --- registry -------------------------------------------------------------------------

    def register(self, item: MenuItem) -> None:
        self.pages[item.name] = item

    def available(self, item: MenuItem) -> bool:
        return all(name in OPERATIONS for name in item.needs)

    def has_op(self, name: str) -> bool:
        return name in OPERATIONS

    def spec(self, name: str) -> OperationSpec:
        return OPERATIONS[name]

    def check_menu(self) -> None:
        """Refuse unknown names in ``[web] menu`` and ``[web] dashboard`` (the configuration
        cannot know the pages)."""
        for name in self.config.web.menu:
            if name not in self.pages:
                known = ", ".join(sorted(self.pages))
                raise StoreError(
                    ErrorKind.PARAMS, f"web.menu: unknown page {name!r} (pages: {known})"
                )
        for name in self.config.web.dashboard:
            if name not in DASHBOARD_PANELS:
                known = ", ".join(DASHBOARD_PANELS)
                raise StoreError(
                    ErrorKind.PARAMS, f"web.dashboard: unknown panel {name!r} (panels: {known})"
                )

    def menu(self, session: WebSession | None) -> list[MenuItem]:
        if session is None:
            return []
        out = []
        for name in self.config.web.menu:
            item = self.pages.get(name)
            if item is not None and self.allowed(item.audience, session) and self.available(item):
                out.append(item)
        return out

    @staticmethod
    def allowed(audience: Audience, session: WebSession | None) -> bool:
        if audience == "login":
            return True
        if session is None:
            return False
        if audience == "manager":
            return session.account.manager
        if audience == "pop":
            return session.account.kind.value == "pop"
        return True

    # --- rendering ------------------------------------------------------------------------

    def template_for(self, name: str, fallback: str) -> str:
        """``name`` if a site or built-in template of that name exists, else ``fallback``."""
        try:
            self.env.get_template(name)
        except jinja2.TemplateNotFound:
            return fallback
        return name

    def render(
        self, view: View, template: str, *, status: int = 200, **values: object
    ) -> HTMLResponse:
        session = view.session
        locale = negotiate(view.request.headers.get("accept-language"))
        page = self.env.get_template(template).render(
            site=self.config.web,
            locale=locale,
            locale_tag=language_tag(locale),
            session=session,
            account=None if session is None else session.account,
            csrf_token="" if session is None else session.csrf_token,
            menu=self.menu(session),
            path=view.request.url.path,
            **values,
        )
        response = HTMLResponse(page, status_code=status)
        self.secure(response)
        return response

    def error_page(self, view: View, status: int, title: str, message: str) -> HTMLResponse:
        return self.render(view, "error.html", status=status, title=title, message=message)

    @staticmethod
    def secure(response: _R) -> _R:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @staticmethod
    def redirect(path: str) -> RedirectResponse:
        response = RedirectResponse(path, status_code=303)
        Site.secure(response)
        return response

    def sessions_secure(self, request: Request) -> bool:
        return secure_cookie(request, self.config.web.secure_cookies)

    def password_policy_text(self) -> str:
        """The ``[auth]`` password policy in one sentence, for the password page."""
        auth = self.config.auth
        classes = max(1, min(4, auth.password_classes))
        text = f"A new password needs at least {auth.password_min_length} characters"
        if classes > 1:
            text += f" and at least {classes} of: lower case, upper case, digits, other characters"
        return text + "; it may not be your account name."

    # --- operations -----------------------------------------------------------------------

    def actor(self, view: View) -> Actor:
        assert view.session is not None
        account = view.session.account
        return Actor(
            name=account.name, account=account, origin=f"web {client_address(view.request)}"
        )

    async def run(self, view: View, op: Operation) -> object:
        """Run ``op`` as the logged-in account (the one permission check, the audit log)."""
        ctx = dataclasses.replace(self.ctx.management(), actor=self.actor(view))
        return await run_operation(op, ctx)

    # --- the wrapper every page goes through ----------------------------------------------

    def page(
        self, audience: Audience, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            view = View(request, None)
            try:
                view.session = await self.sessions.load(request)
                if request.method == "POST":
                    refused = await self._check_post(view, audience)
                    if refused is not None:
                        return refused
                if audience != "login" and view.session is None:
                    if request.method == "GET":
                        return self.redirect("/login?next=" + quote(request.url.path, safe="/"))
                    return self.redirect("/login")
                if not self.allowed(audience, view.session):
                    return self.error_page(
                        view, 403, "Forbidden", "This page is not available to your account."
                    )
                return self.secure(await handler(request, view))
            except StoreError as exc:
                log.warning("web: %s %s: %s", request.method, request.url.path, exc)
                status = 503 if exc.kind in (ErrorKind.TEMP, ErrorKind.UNAVAILABLE) else 500
                return self.error_page(view, status, "Error", exc.public)
            except Exception:
                log.exception("web: %s %s failed", request.method, request.url.path)
                return self.error_page(
                    view, 500, "Error", "Something went wrong; the error was logged."
                )

        return endpoint

    async def _check_post(self, view: View, audience: Audience) -> Response | None:
        request = view.request
        # Browsers send forms with a length; a body without one (chunked) could be endless.
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return self.error_page(view, 411, "Bad request", "The form has no length.")
        if int(length) > MAX_FORM_OCTETS:
            return self.error_page(view, 413, "Too large", "The form is too large.")
        if not csrf.same_origin(request):
            return self._forged(view)
        try:
            form: FormData = await request.form(max_files=0, max_fields=100)
        except Exception:  # malformed body: multipart errors, bad encodings
            return self.error_page(view, 400, "Bad request", "The form could not be read.")
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        view.form = values
        given = values.get(csrf.FIELD)
        if audience == "login":
            expected = request.cookies.get(csrf.LOGIN_COOKIE)
        else:
            expected = None if view.session is None else view.session.csrf_token
        if not csrf.tokens_match(expected, given):
            return self._forged(view)
        return None

    def _forged(self, view: View) -> HTMLResponse:
        return self.error_page(
            view,
            403,
            "Form refused",
            "This form was refused: it expired or was sent from another site. "
            "Reload the page and try again.",
        )
