"""The pure half of the IMAP server: tokens, grammar, per-command parsers, responses.

Nothing here does I/O, touches storage or imports asyncio; see ``msgstore.imap`` for how the
parts fit together.
"""
