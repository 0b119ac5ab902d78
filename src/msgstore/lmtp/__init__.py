"""The delivery channel: LMTP (RFC 2033) and inbound SMTP (RFC 5321) on one hand-written core.

protocol.py    verbs, states, command and ESMTP parameter syntax (pure)
envelope.py    the transaction's envelope and the trace fields prepended to the message
data.py        DATA decoding (dot-unstuffing, CRLF.CRLF only) and BDAT, streamed
errors.py      the error family -> reply code + enhanced status code table
session.py     the command loop, RCPT-time validation, per-recipient replies
service.py     start_lmtp / start_smtp for msgstore serve
"""
