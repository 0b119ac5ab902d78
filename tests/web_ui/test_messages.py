"""A POP-only account reads its messages MIME-decoded in a real browser (header fields,
transfer encodings, charsets, HTML as text, attachments, the source), and dates follow the
browser's locale, with and without JavaScript."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, BrowserContext, Page, StorageState, expect

from tests.web_ui.conftest import DESKTOP, Web, eml, login, shot

PDF = b"%PDF-1.4 fake " * 100


def _spaces(text: str) -> str:
    """Browsers and CLDR separate parts of dates with no-break spaces: make them plain."""
    return re.sub(r"[\u00a0\u202f]", " ", text).strip()


def test_a_pop_account_reads_mime_messages_decoded(
    page: Page, web: Web, dialogs: list[str]
) -> None:
    user = web.add_user("umime", kind="pop")
    admin = web.server.admin
    for name in ("alternative-qp-utf8-attachment", "latin1-base64", "html-only-script"):
        admin.deliver(user.name, eml(name))
    login(page, user.name, user.password)
    page.click("nav.menu >> text=Messages")
    rows = page.locator("table.messages tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(2)).to_contain_text("Grüße aus Köln ✓")  # the encoded-word subject
    expect(rows.nth(2)).to_contain_text("André Müller")

    # multipart/alternative, quoted-printable UTF-8, and a base64 attachment.
    rows.nth(2).locator("a").click()
    expect(page.locator("h1")).to_have_text("Grüße aus Köln ✓")
    headers = page.locator("dl.headers")
    expect(headers.locator("dt")).to_have_text(["From", "To", "Cc", "Date", "Received"])
    expect(headers).to_contain_text("André Müller <andre@example.org>")
    expect(headers).to_contain_text("Zoë <zoe@example.net>")
    expect(headers.locator("time[datetime='2026-11-29T09:05:07Z']")).to_have_count(1)
    expect(page.locator("pre.message")).to_have_text("Schöne Grüße, € 5 und mehr.")
    expect(page.locator("main")).not_to_contain_text("HTML version")  # the other form
    attachment = page.locator("section.attachments tbody tr")
    expect(attachment).to_have_count(1)
    expect(attachment).to_contain_text("Bericht März.pdf")
    expect(attachment).to_contain_text("application/pdf")
    expect(attachment).to_contain_text("1.4 KB")
    shot(page, "message")
    with page.expect_download() as started:
        attachment.locator("a").click()
    download = started.value
    assert download.suggested_filename == "Bericht März.pdf"
    assert download.path().read_bytes() == PDF
    href = attachment.locator("a").get_attribute("href")
    assert href is not None
    reply = page.request.get(href)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in reply.headers["content-security-policy"]
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert page.request.get(href + "0").status == 404  # no such part
    # The source, escaped, as stored.
    page.click("text=View source")
    expect(page.locator("pre.source")).to_contain_text("Sch=C3=B6ne Gr=C3=BC=C3=9Fe")
    expect(page.locator("pre.source")).to_contain_text("Content-Type: multipart/mixed")
    shot(page, "message-source")

    # base64, ISO-8859-1.
    page.goto("/messages")
    rows.nth(1).locator("a").click()
    expect(page.locator("pre.message")).to_have_text("Olá, não há problema: Ñandú.\n")

    # HTML only, with scripts: its text is shown, none of its markup.
    page.goto("/messages")
    rows.nth(0).locator("a").click()
    expect(page.locator("h1")).to_have_text("HTML only")
    text = page.locator("pre.message").inner_text()
    assert text == "Visible & bold\n\n• one\n• two"
    content = page.content()
    assert "alert" not in content
    assert "pwned" not in content
    for tag in ("main script", "main b", "main img", "main style"):
        expect(page.locator(tag)).to_have_count(0)
    assert page.title() != "pwned"
    shot(page, "message-html")
    assert dialogs == []

    # Message numbers are looked up in the logged-in account's INBOX only.
    other = web.add_user("umime2", kind="pop")
    admin.deliver(other.name, eml("latin1-base64"))
    page.click("text=Log out")
    login(page, other.name, other.password)
    for path in ("/messages/3", "/messages/3/source", "/messages/3/parts/4"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 404, path


def _dates(
    browser: Browser, web: Web, state: StorageState, locale: str, zone: str
) -> tuple[str, str, str]:
    """The message's Date on the message page of a browser with this locale and time zone:
    the server's text (kept as the tooltip), the text static/app.js shows, and the locale
    the page says it chose."""
    context: BrowserContext = browser.new_context(
        base_url=web.base, viewport=DESKTOP, locale=locale, timezone_id=zone, storage_state=state
    )
    try:
        page = context.new_page()
        page.goto("/messages/1")
        expect(page.locator("h1")).to_have_text("Grüße aus Köln ✓")
        when = page.locator("dl.headers time[datetime='2026-11-29T09:05:07Z']")
        expect(when).to_have_attribute("title", re.compile("UTC"))  # the script has run
        if locale == "de-DE":
            shot(page, "message-de")
        return (
            _spaces(when.get_attribute("title") or ""),
            _spaces(when.inner_text()),
            page.locator("html").get_attribute("data-locale") or "",
        )
    finally:
        context.close()


def test_dates_follow_the_browsers_locale(browser: Browser, page: Page, web: Web) -> None:
    """The server writes dates in the locale of Accept-Language, in UTC (readable without
    JavaScript: test_user_pages.py checks that), then static/app.js shows them in the
    browser's time zone; always in <time datetime="ISO">."""
    user = web.add_user("ulocale", kind="pop")
    web.server.admin.deliver(user.name, eml("alternative-qp-utf8-attachment"))
    login(page, user.name, user.password)
    expect(page).to_have_url(web.base + "/usage")
    state = page.context.storage_state()  # one login for both browsers
    assert _dates(browser, web, state, "de-DE", "Europe/Berlin") == (
        "29.11.2026, 09:05 UTC",
        "29.11.2026, 10:05",
        "de-DE",
    )
    assert _dates(browser, web, state, "en-US", "America/New_York") == (
        "Nov 29, 2026, 9:05 AM UTC",
        "Nov 29, 2026, 4:05 AM",
        "en-US",
    )
