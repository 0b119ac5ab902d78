"""``/api/v1/docs``: the OpenAPI document as one plain HTML page, rendered on the server.

Swagger UI and ReDoc load their JavaScript from a CDN, which a mail server on a closed
network cannot reach and which a ``default-src 'self'`` policy forbids; vendoring them would
add megabytes of JavaScript to review. This page needs no script and no other file: each
route with its summary, who may call it, its parameters (where they go, type, required,
help) and its responses, straight from the same document ``/api/v1/openapi.json`` serves
(load that into any OpenAPI tool for more).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, Final

_STYLE: Final = """
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h2{margin-top:2.2rem;border-bottom:1px solid #ccc}
.route{margin:1.4rem 0;padding:.6rem .9rem;border-left:4px solid #58a;background:#f7f9fb}
.m{font-weight:700;display:inline-block;min-width:4.5rem}
code{font-size:95%}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccd;padding:.2rem .5rem;text-align:left;vertical-align:top}
pre{white-space:pre-wrap;margin:.3rem 0}
"""
#: The page's own Content-Security-Policy: no scripts, no external anything.
CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _type(schema: Mapping[str, Any], components: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return name
    if "anyOf" in schema:
        parts = [_type(s, components) for s in schema["anyOf"]]
        return " | ".join(p for p in parts if p != "null") + (" | null" if "null" in parts else "")
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), components)}"
    if schema.get("format"):
        return f"{kind} ({schema['format']})"
    return kind


def _params_table(rows: list[tuple[str, str, str, bool, str]]) -> str:
    if not rows:
        return "<p>No parameters.</p>"
    out = ["<table><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>help</th></tr>"]
    for name, where, kind, required, text in rows:
        out.append(
            f"<tr><td><code>{_e(name)}</code></td><td>{_e(where)}</td><td>{_e(kind)}</td>"
            f"<td>{'yes' if required else ''}</td><td>{_e(text)}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def render(openapi: Mapping[str, Any], prefix: str) -> str:
    """The HTML page for an OpenAPI document whose paths live under ``prefix``."""
    components = openapi.get("components", {}).get("schemas", {})
    info = openapi.get("info", {})
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(info.get('title', 'API'))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(info.get('title', 'API'))} {_e(info.get('version', ''))}</h1>",
        f"<p>The machine-readable document: <a href='{_e(prefix)}/openapi.json'>"
        f"{_e(prefix)}/openapi.json</a>. Every route needs HTTP Basic (a store account) or "
        "<code>Authorization: Bearer</code> with a token from <code>msgstore token create"
        '</code>. Errors are <code>{"error": kind, "message": text}</code>, with '
        "<code>fields</code> on 422.</p>",
    ]
    by_tag: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for path, item in openapi.get("paths", {}).items():
        for method, op in item.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append((method.upper(), path, op))
    for tag in sorted(by_tag):
        out.append(f"<h2>{_e(tag)}</h2>")
        for method, path, op in sorted(by_tag[tag], key=lambda r: (r[1], r[0])):
            rows: list[tuple[str, str, str, bool, str]] = []
            for param in op.get("parameters", []):
                rows.append(
                    (
                        param["name"],
                        param["in"],
                        _type(param.get("schema", {}), components),
                        bool(param.get("required")),
                        param.get("description", ""),
                    )
                )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = body.get("schema", {})
            if "anyOf" in schema:  # an optional body: Model | null
                schema = next((s for s in schema["anyOf"] if "$ref" in s), schema)
            if "$ref" in schema:
                model = components.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
                required = set(model.get("required", []))
                for name, prop in model.get("properties", {}).items():
                    rows.append(
                        (
                            name,
                            "body",
                            _type(prop, components),
                            name in required,
                            prop.get("description", ""),
                        )
                    )
            statuses = ", ".join(sorted(op.get("responses", {})))
            out.append(
                f"<div class=route id='{_e(op.get('operationId', ''))}'>"
                f"<div><span class=m>{_e(method)}</span><code>{_e(prefix + path)}</code></div>"
                f"<pre>{_e(op.get('description', op.get('summary', '')))}</pre>"
                f"{_params_table(rows)}<div>Responses: {_e(statuses)}</div></div>"
            )
    out.append("</body></html>")
    return "".join(out)
