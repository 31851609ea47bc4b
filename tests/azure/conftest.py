from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import retry
from tests.azure.fake_arm import FakeAzure, FakeCredential


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """Retries still count attempts and budget, but never sleep."""
    retry.set_testing(True)
    yield
    retry.set_testing(False)


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    fake = FakeAzure()
    yield fake
    unexpected = [f"{r.method} {r.host}{r.path}" for r in fake.unmatched]
    assert unexpected == [], "requests no fake route answered"


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()
