"""Browser tests of the web pages: Debian's Chromium, headless, driven by Playwright.

One ``msgstore serve`` (web, IMAP, POP3, poppassd, LMTP), one browser, one browser context
and one page serve every test of this directory (per xdist worker); each test starts with
the context's cookies cleared, the desktop viewport and a blank page, which is all the state
the pages keep in a browser. A new Chromium context costs about two CPU-seconds of profile
set-up and a new page half a second, more than most tests spend on their own pages: a test
that needs a second browser (another user at once, scripts off, a locale) makes its own.
Chromium is never downloaded: ``/usr/bin/chromium`` must exist (``.ci/run`` installs the
``chromium`` package), and without it these tests fail rather than skip.

With ``MSGSTORE_SCREENSHOTS=1`` the tests save a screenshot of every page they visit to
docs/screenshots/ (the README shows them); otherwise nothing is written to the tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Error,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from msgstore.core.accounts import AccountKind
from msgstore.management import Secret
from msgstore.management.accounts import AccountAdd
from tests.conversations.harness import MsgstoreServer, User

CHROMIUM: Final = "/usr/bin/chromium"
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MESSAGES: Final = Path(__file__).resolve().parent / "messages"
SESSION_COOKIE: Final = "msgstore_session"
DESKTOP: Final = ViewportSize(width=1100, height=760)
PHONE: Final = ViewportSize(width=390, height=780)


@dataclass(frozen=True, slots=True)
class Web:
    """The server under test and how to reach its pages."""

    server: MsgstoreServer
    base: str
    manager: User

    def add_user(self, label: str, *, kind: str = "imap") -> User:
        return self.server.admin.add_user(label, kind=kind)

    def add_named(self, name: str, password: str, *, manager: bool = False) -> User:
        admin = self.server.admin
        op = AccountAdd(
            name=name, password=Secret(password), kind=AccountKind.IMAP, manager=manager
        )
        admin.call(op.run(admin.ctx))
        return User(name, name, password, "imap")


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    # No skip: a machine without Chromium fails here (the issue wants these tests in CI).
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    root = tmp_path_factory.mktemp("web-ui")
    server = MsgstoreServer.start(
        root,
        services=("web", "imap", "pop3", "poppassd", "lmtp"),
    )
    try:
        manager = Web(server, "", User("", "", "", "")).add_named(
            "postmaster", "Manager-Pw-2026", manager=True
        )
        yield Web(server, f"http://127.0.0.1:{server.port('web.listen')}", manager)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def shared_context(browser: Browser, web: Web) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=web.base, viewport=DESKTOP, locale="en-GB")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture(scope="package")
def shared_page(shared_context: BrowserContext) -> Iterator[Page]:
    page = shared_context.new_page()
    yield page
    page.close()


@pytest.fixture
def context(shared_context: BrowserContext) -> BrowserContext:
    """The browser context of the tests, without cookies: nobody is logged in."""
    shared_context.clear_cookies()
    return shared_context


@pytest.fixture
def page(context: BrowserContext, shared_page: Page) -> Iterator[Page]:
    """A blank page that fails the test if the browser reports a Content-Security-Policy
    violation (an inline script or style the policy blocked) or a script error on any page
    visited."""
    page = shared_page
    page.goto("about:blank")
    page.set_viewport_size(DESKTOP)
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    def error(exc: Error) -> None:
        problems.append(str(exc))

    page.on("console", console)
    page.on("pageerror", error)
    try:
        yield page
    finally:
        page.remove_listener("console", console)
        page.remove_listener("pageerror", error)
    assert problems == [], problems


@pytest.fixture
def dialogs(page: Page) -> Iterator[list[str]]:
    """Messages of every alert/confirm the page opened (a script that ran): must stay empty."""
    seen: list[str] = []

    def opened(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", opened)
    yield seen
    page.remove_listener("dialog", opened)


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot as docs/screenshots/<name>.png when MSGSTORE_SCREENSHOTS=1."""
    if os.environ.get("MSGSTORE_SCREENSHOTS") != "1":
        return
    assert re.fullmatch(r"[a-z0-9-]+", name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def eml(name: str) -> bytes:
    """A test message of tests/web_ui/messages/ with CRLF line ends."""
    return (MESSAGES / f"{name}.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def login(page: Page, name: str, password: str, *, base: str = "") -> None:
    """Log in through the login form (of the server at ``base``; default: the context's)."""
    page.goto(base + "/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")


#: The manager's session cookie per server, kept by :func:`as_manager` between tests.
_MANAGER_SESSIONS: Final[dict[str, str]] = {}


def as_manager(page: Page, web: Web, path: str = "/manage") -> None:
    """Open ``path`` logged in as the manager, with the session of an earlier test when it
    is still valid (a test that logs out ends it: then this logs in again)."""
    session = _MANAGER_SESSIONS.get(web.base)
    if session:
        page.context.add_cookies([{"name": SESSION_COOKIE, "value": session, "url": web.base}])
        page.goto(path)
        if "/login" not in page.url:
            expect(page.locator("nav.menu")).to_contain_text("Accounts")
            return
    login(page, web.manager.name, web.manager.password)
    expect(page.locator("nav.menu")).to_contain_text("Accounts")
    for cookie in page.context.cookies(web.base):
        if cookie.get("name") == SESSION_COOKIE:
            _MANAGER_SESSIONS[web.base] = cookie.get("value", "")
    if path != "/manage":
        page.goto(path)
