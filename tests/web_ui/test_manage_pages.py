"""The management pages in a real browser: a manager creates, edits and deletes accounts;
bad input is refused with a message and changes nothing; others get 403."""

from __future__ import annotations

import contextlib
import imaplib
import secrets
import tarfile

from playwright.sync_api import Page, expect

from tests.conversations.harness import message
from tests.web_ui.conftest import Web, as_manager, login, shot


def _accounts(web: Web) -> set[str]:
    admin = web.server.admin
    return {a.name for a in admin.call(admin.backend.list_accounts())}


def _login_manager(page: Page, web: Web) -> None:
    login(page, web.manager.name, web.manager.password)
    expect(page.locator("nav.menu")).to_contain_text("Accounts")


def test_manager_creates_an_account_that_can_log_in(page: Page, web: Web) -> None:
    _login_manager(page, web)
    page.click("nav.menu >> text=Dashboard")
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("main")).to_contain_text("Storage")
    page.click("nav.menu >> text=Accounts")
    shot(page, "accounts")
    name = f"created-{secrets.token_hex(3)}"
    form = page.locator("form[data-op='account add']")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=password]").fill("Created-Pw-123")
    form.locator("input[name=quota]").fill("10M")
    form.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_have_text(name)
    expect(page.locator(".notice.ok")).to_contain_text("account add")
    expect(page.locator("main")).to_contain_text("of 10.0 MB")
    shot(page, "account")
    # Edit: disable logins, then enable again.
    modify = page.locator("form[data-op='account modify']")
    modify.locator("select[name=login_disabled]").select_option("on")
    modify.locator("button[type=submit]").click()
    expect(page.locator("dl.facts")).to_contain_text("disabled")
    modify = page.locator("form[data-op='account modify']")
    modify.locator("select[name=login_disabled]").select_option("off")
    modify.locator("button[type=submit]").click()
    expect(page.locator("dl.facts")).to_contain_text("allowed")
    # Search finds it.
    page.goto("/manage/accounts?q=" + name[:10])
    expect(page.locator("main table")).to_contain_text(name)
    # The new account logs in on the web and over IMAP.
    page.click("text=Log out")
    login(page, name, "Created-Pw-123")
    expect(page).to_have_url(web.base + "/usage")
    expect(page.locator("main")).to_contain_text("of 10.0 MB")
    with imaplib.IMAP4("127.0.0.1", web.server.port("imap.listen"), timeout=10) as imap:
        imap.login(name, "Created-Pw-123")
        imap.logout()


def test_manager_resets_a_password_reconstructs_exports_and_deletes(page: Page, web: Web) -> None:
    user = web.add_user("mdel")
    web.server.admin.deliver(user.name, message("For the export"))
    as_manager(page, web, f"/manage/accounts/{user.name}")
    # A generated password is shown once, and works.
    page.locator("form[data-op='password reset'] button[type=submit]").click()
    secret = page.locator(".result code.secret").inner_text()
    assert len(secret) >= 20
    assert _imap_ok(web, user.name, secret)
    shot(page, "account-password-reset")
    # A chosen password, as the manager sets it.
    form = page.locator("form[data-op='password set']")
    form.locator("input[name=password]").fill("Set-By-Manager-1")
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice.ok")).to_contain_text("password set")
    assert _imap_ok(web, user.name, "Set-By-Manager-1")
    # Reconstruct, report only.
    form = page.locator("form[data-op='account reconstruct']")
    form.locator("input[name=check]").check()
    form.locator("button[type=submit]").click()
    expect(page.locator(".result")).to_be_visible()
    shot(page, "account-reconstruct")
    # The export is a tar download holding the message.
    with page.expect_download() as download:
        page.click("text=Download an export")
    path = download.value.path()
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert names
    assert download.value.suggested_filename == f"{user.name}.tar"
    # Share the INBOX with the manager (an ACL entry), then stop sharing it.
    form = page.locator("form[data-op='acl set']")
    form.locator("input[name=mailbox]").fill("INBOX")
    form.locator("input[name=identifier]").fill(web.manager.name)
    form.locator("input[name=rights]").fill("lr")
    form.locator("button[type=submit]").click()
    inbox = page.locator("tr:has(td:text-is('INBOX'))")
    expect(inbox).to_contain_text(f"{web.manager.name}: lr")
    form = page.locator("form[data-op='acl delete']")
    form.locator("input[name=mailbox]").fill("INBOX")
    form.locator("input[name=identifier]").fill(web.manager.name)
    form.locator("button[type=submit]").click()
    expect(inbox).not_to_contain_text(f"{web.manager.name}: lr")
    # Deleting needs the confirmation box.
    delete = page.locator("form[data-op='account delete']")
    delete.locator("button[type=submit]").click()
    assert user.name in _accounts(web)
    delete.locator("input[name=confirm]").check()
    delete.locator("button[type=submit]").click()
    expect(page).to_have_url(web.base + "/manage/accounts?done=account+delete")
    assert user.name not in _accounts(web)


def _enqueue(web: Web, subject: str) -> str:
    """Put a message on the relay queue (no smarthost is configured: it stays there)."""
    admin = web.server.admin

    async def put() -> int:
        async with admin.backend.stage(max_octets=1 << 20) as staged:
            await staged.write(message(subject))
            await staged.finish()
            entry = await admin.backend.enqueue(
                staged, sender="postmaster@example.org", recipients=["friend@example.net"]
            )
        return entry.id

    return str(admin.call(put()))


def _imap_ok(web: Web, name: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", web.server.port("imap.listen"), timeout=10) as imap:
        try:
            imap.login(name, password)
        except imaplib.IMAP4.error:
            return False
        imap.logout()
        return True


def test_manager_forms_refuse_bad_names_and_quotas(
    page: Page, web: Web, dialogs: list[str]
) -> None:
    """Each bad value gets its reason beside the field; no account is created."""
    as_manager(page, web, "/manage/accounts")
    before = _accounts(web)
    cases = [
        ("bad name", "10M", "name", "space"),
        ("-dash", "10M", "name", "may not start"),
        (f"ok-{secrets.token_hex(3)}", "lots", "quota", "invalid size"),
        (f"ok-{secrets.token_hex(3)}", "<script>alert(1)</script>", "quota", "<script>"),
        ("<script>alert(1)</script>", "10M", "name", "'/'"),
    ]
    for name, quota, field, reason in cases:
        form = page.locator("form[data-op='account add']")
        form.locator("input[name=name]").fill(name)
        form.locator("input[name=password]").fill("Some-Pw-123")
        form.locator("input[name=quota]").fill(quota)
        form.locator("button[type=submit]").click()
        error = page.locator(f"form[data-op='account add'] .field:has([name={field}]) .error")
        expect(error).to_contain_text(reason)
        # The value comes back escaped in the form, not as markup.
        expect(page.locator("form[data-op='account add'] input[name=name]")).to_have_value(name)
    shot(page, "accounts-invalid")
    assert _accounts(web) == before
    assert dialogs == []


def test_html_in_names_and_fields_is_shown_as_text(
    page: Page, web: Web, dialogs: list[str]
) -> None:
    """An account name that looks like markup (valid: no space or "/") is escaped on every
    page that shows it; search terms and forwarding addresses too."""
    name = "<script>alert(1)" + secrets.token_hex(2)
    web.add_named(name, "Script-Pw-123")
    as_manager(page, web, "/manage/accounts?q=<script>")
    expect(page.locator("main table")).to_contain_text(name)
    expect(page.locator("input[name=q]")).to_have_value("<script>")
    page.click(f"text={name}")
    expect(page.locator("h1")).to_have_text(name)
    if page.locator("nav.menu >> text=Forwarding").count():
        page.click("nav.menu >> text=Forwarding")
        form = page.locator("form[data-op='forward add']")
        form.locator("input[name=address]").fill("<img src=x onerror=alert(2)>")
        form.locator("input[name=destinations]").fill("<b>x</b>")
        form.locator("button[type=submit]").click()
        expect(page.locator(".notice.error, .field .error").first).to_be_visible()
        expect(form.locator("input[name=address]")).to_have_value("<img src=x onerror=alert(2)>")
    page.click("text=Log out")
    login(page, name, "Script-Pw-123")
    expect(page.locator("header .who")).to_have_text(name)
    login_failed_name = "<b>bold</b><script>alert(3)</script>"
    page.click("text=Log out")
    login(page, login_failed_name, "whatever")
    expect(page.locator("#name")).to_have_value(login_failed_name)
    assert dialogs == []
    assert page.locator("b:text('bold')").count() == 0


def test_management_pages_are_refused_to_other_accounts(page: Page, web: Web) -> None:
    user = web.add_user("mnot")
    login(page, user.name, user.password)
    for path in ("/manage", "/manage/accounts", f"/manage/accounts/{web.manager.name}"):
        response = page.goto(path)
        assert response is not None
        assert response.status == 403, path
        expect(page.locator("main")).not_to_contain_text(web.manager.name)
    shot(page, "forbidden")
    # A forged POST from a logged-in non-manager is refused too, with its token.
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    result = page.evaluate(
        """async (token) => {
            const body = new URLSearchParams({csrf: token, op: "account add",
                                               name: "sneaky", password: "Sneaky-Pw-1"});
            const r = await fetch("/manage/accounts", {method: "POST", body});
            return r.status;
        }""",
        token,
    )
    assert result == 403
    assert "sneaky" not in _accounts(web)


def test_forwarding_page_adds_and_deletes_an_entry(page: Page, web: Web) -> None:
    as_manager(page, web, "/manage/forwarding")
    form = page.locator("form[data-op='forward add']")
    address = f"team-{secrets.token_hex(3)}@example.org"
    form.locator("input[name=address]").fill(address)
    form.locator("input[name=destinations]").fill(web.manager.name)
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice.ok")).to_be_visible()
    expect(page.locator("main table")).to_contain_text(address)
    shot(page, "forwarding")
    row = page.locator(f"tr:has-text('{address}')")
    row.locator("input[name=confirm]").check()
    row.locator("button:text('Delete')").click()
    expect(page.locator(".notice.ok")).to_contain_text("forward delete")
    expect(page.locator("main")).not_to_contain_text(address)


def test_public_folders_and_their_rights(page: Page, web: Web) -> None:
    as_manager(page, web, "/manage/public")
    folder = f"News{secrets.token_hex(2)}"
    form = page.locator("form[data-op='public create']")
    form.locator("input[name=name]").fill(folder)
    form.locator("button[type=submit]").click()
    expect(page.locator("main table")).to_contain_text(folder)
    form = page.locator("form[data-op='public acl set']")
    form.locator("input[name=name]").fill(folder)
    form.locator("input[name=identifier]").fill("anyone")
    form.locator("input[name=rights]").fill("lr")
    form.locator("button[type=submit]").click()
    expect(page.locator(f"tr:has-text('{folder}')")).to_contain_text("anyone: lr")
    form = page.locator("form[data-op='public acl set']")
    form.locator("input[name=name]").fill(folder)
    form.locator("input[name=identifier]").fill("anyone")
    form.locator("input[name=rights]").fill("<script>")
    form.locator("button[type=submit]").click()
    expect(page.locator("form[data-op='public acl set'] .error").first).to_be_visible()
    shot(page, "public")


def test_queue_sessions_dashboard_and_audit(page: Page, web: Web) -> None:
    """The relay queue, live sessions (with a disconnect), the dashboard's panels and the
    audit log, which records what the manager did on the web."""
    first, second = _enqueue(web, "Queued one"), _enqueue(web, "Queued two")
    as_manager(page, web, "/manage/queue")
    expect(page.locator("h1")).to_have_text("Relay queue")
    row = page.locator(f"tr:has(td:text-is('{first}'))")
    expect(row).to_contain_text("friend@example.net")
    row.locator("button:text('Show')").click()
    expect(page.locator(".result")).to_contain_text("Subject: Queued one")
    shot(page, "queue")
    row.locator("button:text('Retry now')").click()
    expect(page.locator(".notice.ok")).to_contain_text("queue retry")
    row = page.locator(f"tr:has(td:text-is('{second}'))")
    row.locator("input[name=confirm]").check()
    row.locator("button:text('Delete')").click()
    expect(page.locator(".notice.ok")).to_contain_text("queue delete")
    expect(page.locator(f"tr:has(td:text-is('{second}'))")).to_have_count(0)
    expect(page.locator(f"tr:has(td:text-is('{first}'))")).to_have_count(1)
    user = web.add_user("mlive")
    imap = imaplib.IMAP4("127.0.0.1", web.server.port("imap.listen"), timeout=10)
    try:
        imap.login(user.name, user.password)
        page.click("nav.menu >> text=Live sessions")
        row = page.locator(f"tr:has-text('{user.name}')")
        expect(row).to_contain_text("imap")
        shot(page, "sessions")
        page.click("nav.menu >> text=Dashboard")
        expect(page.locator("section:has(h2:text('Live sessions')) .big")).not_to_have_text("0")
        expect(page.locator("svg.chart polyline.logins")).to_have_count(1)
        shot(page, "dashboard")
        page.click("nav.menu >> text=Live sessions")
        row.locator("input[name=confirm]").check()
        row.locator("button:text('Disconnect')").click()
        expect(page.locator(".notice.ok")).to_contain_text("session kill")
        expect(page.locator("main")).not_to_contain_text(user.name)
    finally:
        with contextlib.suppress(imaplib.IMAP4.abort, OSError):
            imap.logout()
    page.click("nav.menu >> text=Audit log")
    rows = page.locator("main table tbody tr")
    expect(rows.first).to_contain_text("session kill")
    expect(rows.first).to_contain_text(web.manager.name)
    expect(rows.first).to_contain_text("web 127.0.0.1")
    page.fill("input[name=operation]", "forward add")
    page.click("form.filters button")
    for text in page.locator("main table tbody tr td:nth-child(4)").all_inner_texts():
        assert text == "forward add"
    shot(page, "audit")
