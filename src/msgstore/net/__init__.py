"""Connection plumbing shared by every protocol server.

    listener.py    bind every configured listen address up front (one error names key + address)
    tls.py         the server certificate (generated self-signed on first start) and SSLContext
    addresses.py   peer address rules: loopback, plain-text authentication policy
    logs.py        Dovecot-style text or JSON log lines, with per-session context

May import msgstore.core and msgstore.config only.
"""
