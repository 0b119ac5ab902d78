"""The user pages and the management pages (Jinja2 templates, server-side sessions, CSRF).

    site.py       what every page shares: the wrapper (session, CSRF, 403), rendering, the
                  menu, security headers, running an operation as the logged-in account
    sessions.py   server-side sessions in the store; the cookie
    csrf.py       the synchronizer token and the Origin/Sec-Fetch-Site check
    forms.py      forms from operations' parameters, operations from forms
    render.py     the Jinja2 environment (site templates first), filters for sizes and dates
    static.py     /static/: the site's files first, then the built-in ones; brand.css
    user.py       login, logout, password, usage, a POP-only account's messages
    manage.py     dashboard, accounts, and the pages built from listing operations

docs/web.md describes the pages and how a site re-shapes them.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from msgstore.web.context import WebContext


def build_ui(ctx: WebContext) -> list[BaseRoute]:
    """The routes of the pages and the static files, mounted at ``/``.

    Raises:
        StoreError: PARAMS when ``[web] menu`` names a page that does not exist.
    """
    from msgstore.web.ui import manage, static, user
    from msgstore.web.ui.site import Site

    site = Site(ctx)
    routes = [
        *static.routes(ctx.config),
        *user.routes(site),
        *manage.routes(site),
        *user.fallback(site),
    ]
    site.check_menu()
    return routes
