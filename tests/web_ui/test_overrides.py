"""A site re-shapes the pages without touching the code: templates and static files of the
same name in [web] templates_dir / static_dir, the menu and the dashboard from config,
branding (name, logo, colours)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.conversations.harness import MsgstoreServer
from tests.web_ui.conftest import login, shot

USAGE_OVERRIDE = """{% extends "builtin/usage.html" %}
{% block content %}
<p class="site-note">Questions? Write to help@example.org.</p>
{{ super() }}
{% endblock %}
"""
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32">'
    '<circle cx="16" cy="16" r="14" fill="#aa0000"/></svg>'
)


def test_a_site_overrides_templates_static_files_menu_and_branding(
    page: Page, tmp_path: Path
) -> None:
    templates, static = tmp_path / "site-templates", tmp_path / "site-static"
    templates.mkdir()
    static.mkdir()
    (templates / "usage.html").write_text(USAGE_OVERRIDE)
    (static / "logo.svg").write_text(LOGO)
    (static / "site.txt").write_text("from the site")
    server = MsgstoreServer.start(
        tmp_path / "srv",
        services=("web",),
        config={
            "web.templates_dir": str(templates),
            "web.static_dir": str(static),
            "web.menu": ["password", "usage"],
            "web.site_name": "Example Mail",
            "web.logo": "logo.svg",
            "web.accent_colour": "#aa0000",
        },
    )
    try:
        user = server.admin.add_user("site")
        # The shared page visits this other server by absolute address (its cookies were
        # cleared; the two servers' cookies share the host, never a test).
        base = f"http://127.0.0.1:{server.port('web.listen')}"
        login(page, user.name, user.password, base=base)
        expect(page).to_have_url(base + "/password")  # the first page of the menu
        expect(page.locator("header .brand")).to_have_text("Example Mail")
        assert page.locator("nav.menu a").all_inner_texts() == ["Password", "Usage"]
        page.click("nav.menu >> text=Usage")
        expect(page.locator(".site-note")).to_contain_text("help@example.org")
        expect(page.locator("h1")).to_have_text("Your mailbox")  # the built-in rest
        logo_width = page.evaluate("document.querySelector('img.logo').naturalWidth")
        assert logo_width == 32
        accent = page.evaluate(
            "getComputedStyle(document.documentElement).getPropertyValue('--accent')"
        )
        assert accent.strip() == "#aa0000"
        shot(page, "site-override")
        response = page.goto(base + "/static/site.txt")
        assert response is not None
        assert response.text() == "from the site"
    finally:
        page.context.clear_cookies()
        server.stop()


def test_an_unknown_page_in_the_menu_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"web\.menu: unknown page 'nope'"):
        MsgstoreServer.start(
            tmp_path / "srv", services=("web",), config={"web.menu": ["usage", "nope"]}
        )
