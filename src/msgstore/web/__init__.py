"""The HTTP face of msgstore on ``[web] listen``: user pages, web admin, REST API, metrics.

One ASGI application (:func:`msgstore.web.app.create_app`) served by uvicorn on the
``msgstore serve`` event loop (:mod:`msgstore.web.service`), mounted as:

    /api/v1/...      the REST API (api/): the management operations as JSON, OpenAPI
    /metrics         Prometheus text format (metrics.py)
    /static/...      static files (ui/static, overridable by ``[web] static_dir``)
    /                the user pages and, for managers, the management pages (ui/)

It is a server package, a sibling of imap/ and pop3/: it calls the management operations and
the authenticator, and never touches a backend's files.
"""
