"""Fixtures for the crypto tests: a settable clock and fresh keysets."""

from __future__ import annotations

import pytest

from vsm_phoenix.crypto import KeyKind, Keyset


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def aead_keyset() -> Keyset:
    return Keyset.generate(KeyKind.AES256_GCM)


@pytest.fixture
def mac_keyset() -> Keyset:
    return Keyset.generate(KeyKind.HMAC_SHA256)
