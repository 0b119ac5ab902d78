"""Browser tests of the web pages: Debian's Chromium, headless, driven by Playwright.

One ``msgstore serve`` (web, IMAP, POP3, poppassd, LMTP) and one browser serve every test of
this directory; each test gets a fresh browser context (its own cookies). Chromium is never
downloaded: ``/usr/bin/chromium`` must exist (``.ci/run`` installs the ``chromium`` package),
and without it these tests fail rather than skip.

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
    Page,
    Playwright,
    ViewportSize,
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
        config={"poppassd.min_length": 8},
    )
    try:
        manager = Web(server, "", User("", "", "", "")).add_named(
            "postmaster", "Manager-Pw-2026", manager=True
        )
        yield Web(server, f"http://127.0.0.1:{server.port('web.listen')}", manager)
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser, web: Web) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=web.base, viewport=DESKTOP, locale="en-GB")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test if the browser reports a Content-Security-Policy violation
    (an inline script or style the policy blocked) or a script error on any page visited."""
    page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    yield page
    assert problems == [], problems


@pytest.fixture
def dialogs(page: Page) -> list[str]:
    """Messages of every alert/confirm the page opened (a script that ran): must stay empty."""
    seen: list[str] = []

    def opened(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", opened)
    return seen


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot as docs/screenshots/<name>.png when MSGSTORE_SCREENSHOTS=1."""
    if os.environ.get("MSGSTORE_SCREENSHOTS") != "1":
        return
    assert re.fullmatch(r"[a-z0-9-]+", name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def login(page: Page, name: str, password: str) -> None:
    page.goto("/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
