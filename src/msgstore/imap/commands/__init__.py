"""Command handlers, one module per command group (STYLE.md §1).

Each handler is ``async def handler(session, cmd) -> StatusResponse``: it writes its untagged
responses through ``session.out`` and returns the tagged reply without the tag. Handlers do
not catch :class:`~msgstore.core.errors.StoreError` (the session maps it) and never check an
access right (``storage.access.MailboxAccess`` does).
"""
