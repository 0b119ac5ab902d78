"""An open store (local backend, fresh data directory) driven through the Python API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from msgstore.api import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "data") as opened:
        yield opened


async def deliver(store: Store, user: str, subject: str = "hi", count: int = 1) -> None:
    """Deliver ``count`` small messages to ``user``'s INBOX through the delivery pipeline."""
    from msgstore.delivery.pipeline import Accepted, DeliveryPipeline

    pipeline = DeliveryPipeline.from_config(store.backend, store.config)
    for n in range(count):
        data = f"Subject: {subject} {n}\r\nFrom: a@example.org\r\n\r\nbody {n}\r\n".encode()

        async def source(data: bytes = data) -> AsyncIterator[bytes]:
            yield data

        (outcome,) = await pipeline.deliver_message([user], source())
        assert isinstance(outcome, Accepted), outcome
