"""Connection plumbing shared by every protocol server.

    listener.py    bind every configured listen address up front (one error names key + address)
    tls.py         the server certificate (generated self-signed on first start) and SSLContext
    addresses.py   peer address rules: loopback, plain-text authentication policy
    logs.py        Dovecot-style text or JSON log lines, with per-session context
    stream.py      a connection's transport, backpressure and TLS upgrade; accepting, tracking
                   and gracefully closing sessions (IMAP's connection and service build on it)
    connection.py  the line connection (lines and raw chunks in) and LineService: POP3,
                   poppassd, LMTP/SMTP
    linereader.py  sans-I/O line framing with a length limit

May import msgstore.core and msgstore.config only.
"""
