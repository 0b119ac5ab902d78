"""The user pages in a real browser: log in, usage, password changes across protocols, and a
POP-only account's messages."""

from __future__ import annotations

import imaplib
import re
import smtplib

from playwright.sync_api import Browser, BrowserContext, Page, expect

from msgstore.management.forwarding import Destinations, ForwardAdd
from tests.conversations.harness import LineClient, message
from tests.web_ui.conftest import PHONE, Web, as_manager, login, shot


def _imap_login(web: Web, name: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", web.server.port("imap.listen"), timeout=10) as imap:
        try:
            imap.login(name, password)
        except imaplib.IMAP4.error:
            return False
        imap.logout()
        return True


def test_login_shows_usage_with_folders_and_the_login_itself(page: Page, web: Web) -> None:
    """A user logs in with store credentials and lands on the usage page, which lists the
    folders and the web login just made (last logins by protocol and address)."""
    user = web.add_user("ulogin")
    page.goto("/")
    expect(page).to_have_url(web.base + "/login?next=/")
    shot(page, "login")
    login(page, user.name, user.password)
    expect(page).to_have_url(web.base + "/usage")
    expect(page.locator("h1")).to_have_text("Your mailbox")
    expect(page.locator("main")).to_contain_text("INBOX")
    expect(page.locator("main")).to_contain_text("Trash")
    logins = page.locator("section:has(h2:text('Last logins')) tbody tr")
    expect(logins.first).to_contain_text("WEB")
    expect(logins.first).to_contain_text("127.0.0.1")
    # The date is shown in the browser's locale by static/app.js, with the ISO text kept.
    assert "UTC" in (page.locator("time").first.get_attribute("title") or "")
    expect(page.locator("nav.menu")).not_to_contain_text("Accounts")
    expect(page.locator("section.forwarding")).to_contain_text("Your mail is not forwarded.")


def test_wrong_password_and_unknown_account_get_the_same_message(page: Page, web: Web) -> None:
    """The failure text does not tell whether the account exists (RELIABILITY.md case 16)."""
    user = web.add_user("uwrong")
    login(page, user.name, "not-the-password")
    wrong = page.locator(".notice.error").inner_text()
    expect(page.locator("#name")).to_have_value(user.name)
    login(page, "nobody-" + user.name, "not-the-password")
    unknown = page.locator(".notice.error").inner_text()
    assert wrong == unknown == "The account name or the password is wrong."
    shot(page, "login-failed")
    page.goto("/usage")
    expect(page).to_have_url(web.base + "/login?next=/usage")


def test_password_change_works_for_imap_and_refuses_bad_input(page: Page, web: Web) -> None:
    """Old, new twice: mismatches, a wrong old password and a password the policy refuses
    each get a message and change nothing; a good change works at once over IMAP."""
    user = web.add_user("upass")
    login(page, user.name, user.password)
    page.goto("/password")
    shot(page, "password")

    def change(old: str, new: str, again: str) -> None:
        page.fill("#old", old)
        page.fill("#new", new)
        page.fill("#again", again)
        page.click("main button[type=submit]")

    change(user.password, "Brand-New-Pw-1", "Brand-New-Pw-2")
    expect(page.locator("#again ~ .error")).to_have_text("The new passwords do not match.")
    shot(page, "password-mismatch")
    change("wrong-old-password", "Brand-New-Pw-1", "Brand-New-Pw-1")
    expect(page.locator("#old ~ .error")).to_have_text("The current password is wrong.")
    change(user.password, "short", "short")
    expect(page.locator("#new ~ .error")).to_contain_text("at least 8 characters")
    expect(page.locator("main")).to_contain_text("A new password needs at least 8 characters")
    shot(page, "password-refused")
    change(user.password, user.name, user.name)
    expect(page.locator("#new ~ .error")).to_contain_text("may not be the user name")
    change(user.password, "x" * 1100, "x" * 1100)
    expect(page.locator("#new ~ .error")).to_contain_text("1024")
    assert _imap_login(web, user.name, user.password)

    change(user.password, "Brand-New-Pw-1", "Brand-New-Pw-1")
    expect(page.locator(".notice.ok")).to_contain_text("Your password was changed")
    assert _imap_login(web, user.name, "Brand-New-Pw-1")
    assert not _imap_login(web, user.name, user.password)
    # This browser stays logged in (its session was renewed), and the IMAP login shows up
    # among the last logins once the batch is written (auth/sasl.py: within 2 s).
    for _ in range(40):
        page.goto("/usage")
        if page.locator("td:text-is('IMAP')").count():
            break
        page.wait_for_timeout(100)
    expect(page).to_have_url(web.base + "/usage")
    expect(page.locator("section:has(h2:text('Last logins'))")).to_contain_text("IMAP")


def test_a_password_change_ends_the_other_web_sessions(
    context: BrowserContext, page: Page, web: Web
) -> None:
    user = web.add_user("usess")
    other = context.browser.new_context(base_url=web.base) if context.browser else None
    assert other is not None
    try:
        other_page = other.new_page()
        login(other_page, user.name, user.password)
        expect(other_page).to_have_url(web.base + "/usage")
        login(page, user.name, user.password)
        page.goto("/password")
        page.fill("#old", user.password)
        page.fill("#new", "Other-New-Pw-9")
        page.fill("#again", "Other-New-Pw-9")
        page.click("main button[type=submit]")
        expect(page.locator(".notice.ok")).to_be_visible()
        other_page.goto("/usage")
        expect(other_page).to_have_url(web.base + "/login?next=/usage")
    finally:
        other.close()


def test_a_password_changed_over_poppassd_works_for_the_web(page: Page, web: Web) -> None:
    """Issue #5: the new password works at once for the web."""
    user = web.add_user("upoppassd")
    with LineClient(web.server.port("poppassd.listen")) as client:
        assert client.read_line() is not None
        assert client.command(f"user {user.name}").startswith(b"200")
        assert client.command(f"pass {user.password}").startswith(b"200")
        assert client.command("newpass Via-Poppassd-7").startswith(b"200")
        client.command("quit")
    login(page, user.name, user.password)
    expect(page.locator(".notice.error")).to_be_visible()
    login(page, user.name, "Via-Poppassd-7")
    expect(page).to_have_url(web.base + "/usage")


def test_usage_changes_after_an_lmtp_delivery(page: Page, web: Web) -> None:
    user = web.add_user("uusage")
    admin = web.server.admin
    account = admin.call(admin.backend.get_account(user.name))
    admin.call(admin.backend.set_quota(account.id, storage_limit_kib=1024, message_limit=100))
    login(page, user.name, user.password)
    expect(page.locator("main")).to_contain_text("0 bytes used of 1.0 MB")
    inbox = page.locator("tr:has(td:text-is('INBOX'))")
    expect(inbox.locator("td").nth(1)).to_have_text("0")
    body = "x" * 50_000 + "\r\n"
    with smtplib.LMTP("127.0.0.1", web.server.port("lmtp.listen")) as lmtp:
        lmtp.sendmail("sender@example.org", [user.name], message("Usage grows", body))
    page.reload()
    expect(inbox.locator("td").nth(1)).to_have_text("1")
    expect(page.locator("main")).to_contain_text("of 1.0 MB (5%)")
    expect(page.locator("meter.bar").first).to_have_attribute("max", "1048576")
    used = int(page.locator("meter.bar").first.get_attribute("value") or "0")
    assert 50_000 < used < 52_000
    shot(page, "usage-with-mail")
    page.set_viewport_size(PHONE)
    shot(page, "usage-phone")


def test_pop_only_account_lists_reads_and_deletes_its_messages(
    page: Page, web: Web, dialogs: list[str]
) -> None:
    """POP-only accounts see their maildrop; the text is shown escaped, never as HTML."""
    user = web.add_user("upop", kind="pop")
    admin = web.server.admin
    admin.deliver(user.name, message("First <b>hello</b>", "<script>alert(1)</script>\r\n"))
    admin.deliver(user.name, message("Second", "Plain text.\r\n"))
    login(page, user.name, user.password)
    page.click("nav.menu >> text=Messages")
    rows = page.locator("table.messages tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Second")
    shot(page, "messages")
    page.click("text=First <b>hello</b>")
    expect(page.locator("h1")).to_have_text("First <b>hello</b>")
    expect(page.locator("pre.message")).to_contain_text("<script>alert(1)</script>")
    page.click("text=Delete this message")
    expect(page.locator(".notice.ok")).to_contain_text("deleted")
    expect(rows).to_have_count(1)
    assert [m.uid for m in admin.inbox(user.name)] == [2]
    assert dialogs == []
    # A full account has no messages page.
    imap_user = web.add_user("uimap")
    page.click("text=Log out")
    login(page, imap_user.name, imap_user.password)
    expect(page.locator("nav.menu")).not_to_contain_text("Messages")
    response = page.goto("/messages")
    assert response is not None
    assert response.status == 403


def test_the_basic_forms_work_without_javascript(browser: Browser, web: Web) -> None:
    """Log in, change the password and log out with scripts switched off; dates read well
    without the script, in the browser's language (Accept-Language)."""
    user = web.add_user("unojs")
    context = browser.new_context(base_url=web.base, java_script_enabled=False, locale="de-DE")
    try:
        page = context.new_page()
        login(page, user.name, user.password)
        expect(page).to_have_url(web.base + "/usage")
        # The server's own text: German date, 24-hour time, in UTC.
        expect(page.locator("time").first).to_have_text(
            re.compile(r"^\d\d\.\d\d\.\d{4}, \d\d:\d\d UTC$")
        )
        page.goto("/password")
        page.fill("#old", user.password)
        page.fill("#new", "No-Script-Pw-1")
        page.fill("#again", "No-Script-Pw-1")
        page.click("main button[type=submit]")
        expect(page.locator(".notice.ok")).to_be_visible()
        page.click("text=Log out")
        expect(page).to_have_url(web.base + "/login")
        login(page, user.name, "No-Script-Pw-1")
        expect(page).to_have_url(web.base + "/usage")
    finally:
        context.close()


def test_usage_shows_the_forwarding_of_ones_own_addresses(page: Page, web: Web) -> None:
    """A manager forwards X's mail on the forwarding page; X sees that entry, and the one of
    a plus-form of its address, on its usage page; Y sees none of X's."""
    x, y = web.add_user("ufwdx"), web.add_user("ufwdy")
    admin = web.server.admin
    for address in (f"{x.name}+lists@example.org", f"{x.name}-other"):
        op = ForwardAdd(address=address, destinations=Destinations.parse(y.name))
        admin.call(op.run(admin.ctx))
    as_manager(page, web, "/manage/forwarding")
    form = page.locator("form[data-op='forward add']")
    form.locator("input[name=address]").fill(x.name)
    form.locator("input[name=destinations]").fill(f"{y.name}, {web.manager.name}")
    form.locator("input[name=keep_copy]").check()
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice.ok")).to_be_visible()
    page.context.clear_cookies()  # the manager's session stays for the next test

    login(page, x.name, x.password)
    rows = page.locator("section.forwarding tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text(
        [x.name, f"{y.name}, {web.manager.name}", "yes"]
    )
    expect(rows.nth(1).locator("td")).to_have_text([f"{x.name}+lists@example.org", y.name, "no"])
    expect(page.locator("section.forwarding")).not_to_contain_text("-other")
    shot(page, "usage")
    page.click("text=Log out")

    login(page, y.name, y.password)
    expect(page.locator("section.forwarding")).to_contain_text("Your mail is not forwarded.")
    expect(page.locator("main")).not_to_contain_text(x.name)
