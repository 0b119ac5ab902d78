"""POP3 server (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034) and
AUTH-RESP-CODE (RFC 3206), for both kinds of account: a ``pop`` account's only mailbox and an
``imap`` account's INBOX are the maildrop.

    syntax.py        pure parsers: command line -> Command, message numbers, line counts
    replies.py       reply lines and the dot-stuffing multi-line writer
    errors.py        ErrorKind -> RESP-CODE, the one table
    maildrop.py      the session's view of INBOX: snapshot, DELE marks, the maildrop lock
    authorization.py USER, PASS, AUTH, STLS (AUTHORIZATION state)
    transaction.py   STAT, LIST, RETR, TOP, UIDL, DELE, RSET, NOOP (TRANSACTION state)
    commands.py      the command table (name, states, handler), CAPA, QUIT
    session.py       one connection: greeting, the read-dispatch loop, timeouts, UPDATE
    service.py       ``start(config, backend, listeners)`` for ``msgstore serve``

Imports core, config, mime (part maps), storage.base, auth, net -- never a backend.
"""
