"""KeysetAead.charge: a bulk charge of ``n`` uses counts exactly what ``n`` seals count
(in memory, in storage across a restart, at rotation and at the hard limit)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.crypto import KeyKind, Keyset, KeysetAead, MemoryStorage
from vsm_phoenix.errors import CapacityError, InvalidArgument


def _sealer(lease: int, hard: int, auto_rotate: bool) -> KeysetAead:
    return KeysetAead(Keyset.generate(KeyKind.AES256_GCM), MemoryStorage(), lease=lease,
                      hard_limit=hard, soft_limit=hard, auto_rotate=auto_rotate)


def _state(aead: KeysetAead) -> list[tuple[bool, int]]:
    """(is primary, uses) of every key, in the keyset's order (ids are random)."""
    primary = aead.keyset.primary_id
    return [(k.key_id == primary, aead.usage(k.key_id)) for k in aead.keyset.keys]


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except CapacityError:
        return "capacity"
    return "ok"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(1, 9),
       st.integers(20, 120), st.booleans())
def test_a_bulk_charge_counts_what_as_many_seals_count(
    charges: list[int], lease: int, hard: int, auto_rotate: bool
) -> None:
    bulk, one_by_one = _sealer(lease, hard, auto_rotate), _sealer(lease, hard, auto_rotate)
    for n in charges:
        assert _outcome(lambda n=n: bulk.charge(n)) == _outcome(  # type: ignore[misc]
            lambda n=n: [one_by_one.encrypt(b"") for _ in range(n)])  # type: ignore[misc]
        assert _state(bulk) == _state(one_by_one)
        assert _outcome(lambda: bulk.encrypt(b"x")) == _outcome(
            lambda: one_by_one.encrypt(b"x"))
        assert _state(bulk) == _state(one_by_one)


def test_a_charge_is_persisted_ahead_and_survives_a_restart() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    storage = MemoryStorage()
    aead = KeysetAead(ks, storage, lease=10)
    aead.encrypt(b"first")  # leases 0..9
    aead.charge(25)  # crosses two leases
    assert aead.usage(ks.primary_id) == 26
    again = KeysetAead(ks, storage, lease=10)
    assert again.usage(ks.primary_id) >= 26  # never under-counted after a restart


def test_the_hard_limit_stops_a_charge() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    aead = KeysetAead(ks, hard_limit=8, soft_limit=8, lease=3, auto_rotate=False)
    aead.charge(5)
    with pytest.raises(CapacityError):
        aead.charge(4)
    assert aead.usage(ks.primary_id) == 8
    with pytest.raises(CapacityError):
        aead.encrypt(b"")


@pytest.mark.parametrize("uses", [-1, 1.0, True, "3", None])
def test_a_charge_takes_a_count(uses: object) -> None:
    aead = KeysetAead(Keyset.generate(KeyKind.AES256_GCM))
    before = aead.usage(aead.keyset.primary_id)
    with pytest.raises(InvalidArgument):
        aead.charge(uses)  # type: ignore[arg-type]
    assert aead.usage(aead.keyset.primary_id) == before
