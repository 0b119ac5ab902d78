"""Sessions, cookies, CSRF and headers, checked in a real browser (and one raw client)."""

from __future__ import annotations

import http.client
import http.server
import imaplib
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.conversations.harness import MsgstoreServer
from tests.web_ui.conftest import Web, as_manager, login


def _imap_ok(web: Web, name: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", web.server.port("imap.listen"), timeout=10) as imap:
        try:
            imap.login(name, password)
        except imaplib.IMAP4.error:
            return False
        imap.logout()
        return True


def test_session_cookie_is_httponly_strict_and_rotated(
    context: BrowserContext, page: Page, web: Web
) -> None:
    user = web.add_user("scookie")
    page.goto("/login")
    context.add_cookies([{"name": "msgstore_session", "value": "planted", "url": web.base}])
    login(page, user.name, user.password)
    expect(page).to_have_url(web.base + "/usage")
    (cookie,) = [c for c in context.cookies() if c["name"] == "msgstore_session"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["value"] != "planted"
    assert len(cookie["value"]) >= 43  # 256 bits, base64url
    assert page.evaluate("document.cookie").find("msgstore_session") == -1
    # Logging out ends the session on the server, not only in this browser.
    stolen = cookie["value"]
    page.click("text=Log out")
    expect(page).to_have_url(web.base + "/login")
    context.add_cookies([{"name": "msgstore_session", "value": stolen, "url": web.base}])
    page.goto("/usage")
    expect(page).to_have_url(web.base + "/login?next=/usage")


def test_every_page_forbids_inline_script(page: Page, web: Web) -> None:
    response = page.goto("/login")
    assert response is not None
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    # The pages carry no inline script or style for the policy to break.
    for path in ("/login",):
        page.goto(path)
        assert page.locator("script:not([src])").count() == 0
        assert page.locator("[style]").count() == 0
        assert page.locator("style").count() == 0


@pytest.fixture
def evil_site(web: Web) -> Iterator[str]:
    """Another origin (same host, other port) serving a page that posts to our forms."""
    target = web.base

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"""<!doctype html><form id="f" method="post" action="{target}/password">
<input name="old" value="guess"><input name="new" value="Hijacked-Pw-1">
<input name="again" value="Hijacked-Pw-1"></form>
<form id="g" method="post" action="{target}/manage/accounts">
<input name="op" value="account add"><input name="name" value="evil-account">
<input name="password" value="Evil-Pw-123"></form>""".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # any free port
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_forged_form_from_another_site_is_refused(page: Page, web: Web, evil_site: str) -> None:
    as_manager(page, web)
    for form in ("f", "g"):
        page.goto(evil_site)
        with page.expect_navigation():
            page.evaluate(f"document.getElementById('{form}').submit()")
        expect(page.locator("h1")).to_have_text("Form refused")
    assert _imap_ok(web, web.manager.name, web.manager.password)
    admin = web.server.admin
    assert "evil-account" not in {a.name for a in admin.call(admin.backend.list_accounts())}


def test_a_form_without_its_token_is_refused(page: Page, web: Web) -> None:
    """Same origin, logged in, but the token removed from the form: refused."""
    user = web.add_user("snotoken")
    login(page, user.name, user.password)
    page.goto("/password")
    page.fill("#old", user.password)
    page.fill("#new", "No-Token-Pw-1")
    page.fill("#again", "No-Token-Pw-1")
    page.evaluate("document.querySelector('main input[name=csrf]').remove()")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Form refused")
    assert _imap_ok(web, user.name, user.password)
    page.goto("/password")
    page.evaluate("document.querySelector('main input[name=csrf]').value = ''")
    page.fill("#old", user.password)
    page.fill("#new", "No-Token-Pw-1")
    page.fill("#again", "No-Token-Pw-1")
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Form refused")
    assert _imap_ok(web, user.name, user.password)


def test_a_post_without_token_from_a_fresh_session_is_refused(
    context: BrowserContext, page: Page, web: Web
) -> None:
    """RELIABILITY.md §4 item 9: an empty token must not match an empty session token.

    A browser without any cookie posts the login form without a token; and a raw
    client with neither cookie nor token posts it too. Both are refused before any password
    is checked, even with the right password.
    """
    user = web.add_user("sfresh")
    page.goto("/login")
    context.clear_cookies()
    page.evaluate("document.querySelector('input[name=csrf]').remove()")
    page.fill("#name", user.name)
    page.fill("#password", user.password)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Form refused")
    assert not [c for c in context.cookies() if c["name"] == "msgstore_session"]
    for token in (None, ""):
        fields = {"name": user.name, "password": user.password}
        if token is not None:
            fields["csrf"] = token
        conn = http.client.HTTPConnection("127.0.0.1", int(web.base.rsplit(":", 1)[1]))
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if token is not None:
            headers["Cookie"] = "msgstore_login="
        conn.request("POST", "/login", urllib.parse.urlencode(fields), headers)
        response = conn.getresponse()
        assert response.status == 403
        assert "msgstore_session" not in (response.getheader("set-cookie") or "")
        conn.close()


def test_static_files_do_not_leave_their_directory(web: Web) -> None:
    port = int(web.base.rsplit(":", 1)[1])
    for path in ("/static/style.css", "/static/brand.css"):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, path
        assert response.getheader("content-type", "").startswith("text/css")
        response.read()
        conn.close()
    for path in ("/static/../__init__.py", "/static/%2e%2e/__init__.py", "/static/.hidden"):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 404, path
        response.read()
        conn.close()


def _web_login(port: int, name: str, password: str) -> int:
    """One login over plain HTTP with the form's token and cookie; the response status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    html = response.read().decode()
    cookie = (response.getheader("set-cookie") or "").split(";", 1)[0]
    token = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    body = urllib.parse.urlencode({"csrf": token, "name": name, "password": password})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    conn.request("POST", "/login", body, headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_web_login_failures_slow_imap_down_for_that_account(tmp_path: Path) -> None:
    """The web checks passwords through the process's one login throttle (RELIABILITY.md
    case 15): failures on the web delay the next IMAP login of that account."""
    server = MsgstoreServer.start(
        tmp_path / "srv",
        services=("web", "imap"),
        config={"auth.failure_delay_ms": 600, "auth.failure_delay_max_ms": 600},
    )
    try:
        user = server.admin.add_user("throttled")
        port = server.port("web.listen")
        assert _web_login(port, user.name, "wrong-password") == 401
        started = time.monotonic()
        with imaplib.IMAP4("127.0.0.1", server.port("imap.listen"), timeout=10) as imap:
            imap.login(user.name, user.password)
            imap.logout()
        assert time.monotonic() - started >= 0.5
        assert _web_login(port, user.name, user.password) == 303
    finally:
        server.stop()


def test_no_request_field_makes_a_page_act_on_another_account(page: Page, web: Web) -> None:
    """The user pages take the account from the session only: a forged ``name`` field in
    the password form changes the sender's own password, never the named account's."""
    victim, user = web.add_user("svictim"), web.add_user("sattacker")
    login(page, user.name, user.password)
    page.goto("/password")
    token = page.locator("main input[name=csrf]").get_attribute("value")
    status = page.evaluate(
        """async ([token, old, victim]) => {
            const body = new URLSearchParams({csrf: token, old: old, new: "Taken-Over-1",
                                               again: "Taken-Over-1", name: victim,
                                               user: victim});
            const r = await fetch("/password", {method: "POST", body});
            return r.status;
        }""",
        [token, user.password, victim.name],
    )
    assert status == 200
    assert _imap_ok(web, victim.name, victim.password)
    assert _imap_ok(web, user.name, "Taken-Over-1")
    response = page.goto("/no/such/page")
    assert response is not None
    assert response.status == 404
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_oversized_and_lengthless_forms_are_refused(web: Web) -> None:
    port = int(web.base.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = "name=" + "x" * 70_000
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    assert response.status == 413
    response.read()
    conn.putrequest("POST", "/login")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"5\r\nname=\r\n0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 411
    response.read()
    conn.close()
