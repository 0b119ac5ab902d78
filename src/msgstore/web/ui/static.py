"""Static files under ``/static/``: the site's ``[web] static_dir`` first, then the built-in
ones, so a site replaces ``style.css`` or adds ``logo.svg`` by dropping a file there.

``/static/brand.css`` is generated from ``[web] accent_colour`` and ``header_colour`` (the
pages have no inline style, which the Content-Security-Policy forbids); the colours are
validated by the configuration, so nothing but a hex colour reaches the CSS.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from msgstore.config import Config
from msgstore.web.ui.render import BUILTIN_STATIC
from msgstore.web.ui.site import SECURITY_HEADERS

#: Static files may be cached by the browser for this long (seconds).
MAX_AGE_S: Final = 3600


def find_static(directories: list[Path], relative: str) -> Path | None:
    """The first ``directory/relative`` that is a regular file inside its directory."""
    if not relative or "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    for directory in directories:
        root = directory.resolve()
        candidate = (root / relative).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    return None


def brand_css(config: Config) -> str:
    web = config.web
    return f":root {{ --accent: {web.accent_colour}; --header: {web.header_colour}; }}\n"


def routes(config: Config) -> list[BaseRoute]:
    directories = [BUILTIN_STATIC]
    if config.web.static_dir is not None:
        directories.insert(0, config.web.static_dir)
    brand = brand_css(config)
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"],
        "Cache-Control": f"public, max-age={MAX_AGE_S}",
    }

    async def static(request: Request) -> Response:
        relative = str(request.path_params["path"])
        if relative == "brand.css" and find_static(directories[:-1], relative) is None:
            return PlainTextResponse(brand, media_type="text/css", headers=headers)
        found = find_static(directories, relative)
        if found is None:
            return PlainTextResponse("Not found\n", status_code=404, headers=headers)
        media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        return FileResponse(found, media_type=media_type, headers=headers)

    return [Route("/static/{path:path}", static, methods=["GET", "HEAD"])]
