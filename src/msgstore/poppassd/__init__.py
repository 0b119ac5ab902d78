"""poppassd: the password-change protocol of Eudora, Mulberry and friends.

The classic dialogue (Qualcomm's poppassd, as those clients send it; every reply is one line,
``200`` for success and ``500`` for failure, with human text)::

    S: 200 msgstore poppassd ready, who are you?
    C: user alice
    S: 200 Your password please.
    C: pass old secret
    S: 200 Your new password please.
    C: newpass new secret
    S: 200 Password changed, thank-you.
    C: quit
    S: 200 Bye.

    session.py    the dialogue, the error table
    service.py    ``start(config, backend, listeners)`` for ``msgstore serve``

The old password is checked by the same code as every login (``auth/sasl.py``: throttled,
unknown users indistinguishable); the new one is stored by the management layer's
``password set`` operation, so it works at once for IMAP, POP3 and the web, and the one
``[auth]`` password policy applies, as for the REST API and the web pages.
"""
