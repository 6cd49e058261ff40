"""KV state-machine tests written against the kv mutants of ``mutants/catalog.py``
(``make mutate MUTATE_ARGS='--area kv'``) that survived ``test_kv.py``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_phoenix.errors import DecodeError
from vsm_phoenix.protocol.envelope import decode_cbor, encode_cbor
from vsm_phoenix.protocol.kv import SNAPSHOT_VERSION, KVStateMachine, cas, put


@pytest.mark.parametrize("version", [0, SNAPSHOT_VERSION + 1, -1])
def test_a_snapshot_of_another_version_is_refused_and_changes_nothing(version: int) -> None:
    sm = KVStateMachine()
    sm.apply(put("c", 1, "k", "v").command)
    before = sm.snapshot()
    # Shaped as the current version (with its drop count "x"), so that only the
    # version number can refuse it.
    foreign = encode_cbor({"v": version, "d": {"x": "y"}, "s": {}, "n": 0, "x": 0})
    with pytest.raises(DecodeError):
        sm.check_snapshot(foreign)
    with pytest.raises(DecodeError):
        sm.restore(foreign)
    assert sm.snapshot() == before


def test_a_failed_compare_and_set_writes_nothing_but_is_remembered() -> None:
    sm = KVStateMachine()
    sm.apply(put("c", 1, "k", "old").command)
    assert sm.apply(cas("c", 2, "k", "other", "new").command) is False
    assert sm.data == {"k": "old"} and sm.sessions["c"][:2] == (2, False)
    assert sm.apply(cas("c", 3, "absent", "x", "new").command) is False
    assert "absent" not in sm.data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.fixed_dictionaries(
    {"v": st.integers(0, 2), "d": st.dictionaries(st.text(max_size=2), st.text(max_size=2),
                                                  max_size=2),
     "s": st.dictionaries(st.text(max_size=2), st.tuples(st.integers(0, 3),
                          st.sampled_from([None, True, False, 1])).map(list), max_size=2),
     "n": st.integers(-1, 3)}).map(encode_cbor))
def test_snapshot_bytes_are_refused_unchanged_or_restored_exactly(data: bytes) -> None:
    """Both outcomes asserted: refused bytes change nothing (``check_snapshot`` and
    ``restore`` agree); accepted bytes restore a state whose snapshot is those bytes
    (a version-1 snapshot: its version-2 reading)."""
    sm = KVStateMachine()
    sm.apply(put("c", 1, "a", "1").command)
    before = sm.snapshot()
    try:
        sm.check_snapshot(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            sm.restore(data)
        assert sm.snapshot() == before
        return
    sm.restore(data)
    doc = decode_cbor(data)
    if doc["v"] == 1:  # read as version 2, every session used at the snapshot's clock
        doc = {**doc, "v": SNAPSHOT_VERSION, "x": 0,
               "s": {c: [*e, doc["n"]] for c, e in doc["s"].items()}}
    assert sm.snapshot() == encode_cbor(doc)
