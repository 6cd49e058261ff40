"""The buffered nonce source: every nonce unique, also across a fork."""

from __future__ import annotations

import os
import sys

import pytest

from vsm_phoenix.crypto import KeyKind, Keyset
from vsm_phoenix.crypto.aead import _POOL_BYTES, NONCE_SIZE, KeysetAead


def _nonce(ciphertext: bytes) -> bytes:
    return ciphertext[5 : 5 + NONCE_SIZE]


def test_nonces_are_unique_across_buffer_refills() -> None:
    aead = KeysetAead(Keyset.generate(KeyKind.AES256_GCM))
    n = 3 * _POOL_BYTES // NONCE_SIZE + 5  # crosses several refills
    nonces = {_nonce(aead.encrypt(b"x")) for _ in range(n)}
    assert len(nonces) == n


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_never_reuses_the_parents_buffered_nonces() -> None:
    aead = KeysetAead(Keyset.generate(KeyKind.AES256_GCM))
    aead.encrypt(b"warm the buffer")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: seal a few and report the nonces
        try:
            os.close(read_fd)
            out = b"".join(_nonce(aead.encrypt(b"c")) for _ in range(8))
            os.write(write_fd, out)
        finally:
            os._exit(0)
    os.close(write_fd)
    child = b""
    while chunk := os.read(read_fd, 4096):
        child += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    parent = b"".join(_nonce(aead.encrypt(b"p")) for _ in range(8))
    child_set = {child[i : i + NONCE_SIZE] for i in range(0, len(child), NONCE_SIZE)}
    parent_set = {parent[i : i + NONCE_SIZE] for i in range(0, len(parent), NONCE_SIZE)}
    assert len(child_set) == 8 and len(parent_set) == 8
    assert not child_set & parent_set
