"""The Python API: ``from msgstore import Store`` -- the management operations as methods.

    async with Store.open("/var/lib/msgstore") as store:
        await store.accounts.add("bob", password="correct horse", quota="1G")

``SyncStore`` is the same without ``await``, for scripts. See docs/api.md.
"""

from msgstore.api.store import METHODS, Store, SyncStore

__all__ = ["METHODS", "Store", "SyncStore"]
