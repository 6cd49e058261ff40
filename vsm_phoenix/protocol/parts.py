"""Payloads larger than one envelope, sent as parts and reassembled within bounds.

Every receiver refuses an envelope whose payload exceeds
:data:`~vsm_phoenix.protocol.envelope.DEFAULT_MAX_PAYLOAD` (16 MiB), so a protocol
that may need to ship more at once (a CRDT's full state) splits the encoded payload
into parts with :func:`split`, and the receiver puts them back together with a
:class:`Reassembler`, as Raft ships a snapshot in chunks.

A part's body is ``{"h": root, "i": index, "n": count, "z": size, "b": bytes,
"m": proof}``. ``root`` names the transfer: the Merkle tree hash of its pieces
(RFC 9162 §2.1.1: a leaf is ``SHA-256(0x00 || piece)``, a node
``SHA-256(0x01 || left || right)``), and ``proof`` is the piece's inclusion proof
(§2.1.3), at most :data:`MAX_PROOF` sibling hashes. So each part is checked when it
arrives, and a bad one is refused before it is kept: a transfer assembled from kept
parts always carries exactly the payload its root names. ``size`` is the payload's
length. Parts may arrive in any order, twice, or not at all: the sender repeats a
transfer (as sync does every interval until acknowledged), the receiver keeps what
it has (a repeated part is ignored), so a lossy link completes a transfer in a few
rounds rather than never.

Bounds (what a peer can make a receiver hold)
---------------------------------------------
* one transfer in progress per sender: a part of another root replaces it;
* ``max_message_bytes`` per transfer, at most :data:`MAX_PARTS` parts;
* at most ``max_assembly_bytes`` and :data:`MAX_ASSEMBLIES` transfers in progress in
  all, counted by their *declared* sizes when they start; a transfer that would
  exceed them is refused, unless transfers idle for ``stale_ms`` can make room.

A malformed part, one whose proof does not lead to its root, or one inconsistent
with its transfer, raises ``RemoteProtocolError`` and changes nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import attrs

from vsm_phoenix.protocol.envelope import DEFAULT_MAX_PAYLOAD
from vsm_phoenix.protocol.node import RemoteProtocolError

__all__ = ["DIGEST_BYTES", "MAX_ASSEMBLIES", "MAX_PARTS", "MAX_PART_BYTES", "MAX_PROOF",
           "Part", "Reassembler", "split"]

DIGEST_BYTES: Final = 32
#: The most parts one transfer may have (bounds the receiver's bookkeeping).
MAX_PARTS: Final = 65_536
#: The most transfers a receiver keeps in progress at once (one per sender).
MAX_ASSEMBLIES: Final = 64
#: The longest inclusion proof: the height of a tree of :data:`MAX_PARTS` leaves.
MAX_PROOF: Final = (MAX_PARTS - 1).bit_length()
#: The largest part: the envelope limit less room for the part's own fields.
MAX_PART_BYTES: Final = DEFAULT_MAX_PAYLOAD - 64 * 1024
_FIELDS: Final = frozenset("hinzbm")


def _leaf(piece: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + piece).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The Merkle tree hash of ``leaves`` (leaf hashes, at least one) and each leaf's
    inclusion proof, siblings from the leaf up (RFC 9162 §2.1.1 and §2.1.3.1)."""
    if len(leaves) == 1:
        return leaves[0], [[]]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two < n
    left, left_proofs = _tree(leaves[:k])
    right, right_proofs = _tree(leaves[k:])
    return _node(left, right), ([[*p, right] for p in left_proofs]
                                + [[*p, left] for p in right_proofs])


def _root_from_proof(index: int, count: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` of ``count``, or
    None when the proof's length does not fit the tree (RFC 9162 §2.1.3.2)."""
    fn, sn, r = index, count - 1, leaf
    for sibling in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(sibling, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, sibling)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def split(payload: bytes, part_bytes: int) -> list[dict[str, Any]]:
    """The part bodies (two or more) that carry ``payload`` in pieces of at most
    ``part_bytes``."""
    if not 1 <= part_bytes <= MAX_PART_BYTES:
        raise ValueError(f"part_bytes must be in 1..{MAX_PART_BYTES}")
    if len(payload) <= part_bytes:
        raise ValueError("a payload that fits in one part is sent whole, not split")
    pieces = [payload[i : i + part_bytes] for i in range(0, len(payload), part_bytes)]
    if len(pieces) > MAX_PARTS:
        raise ValueError(f"{len(pieces)} parts exceed {MAX_PARTS}: raise part_bytes")
    root, proofs = _tree([_leaf(piece) for piece in pieces])
    return [{"h": root, "i": i, "n": len(pieces), "z": len(payload), "b": piece,
             "m": proof} for i, (piece, proof) in enumerate(zip(pieces, proofs, strict=True))]


@attrs.frozen
class Part:
    """One checked part (see the module docstring for the fields)."""

    root: bytes
    index: int
    count: int
    size: int
    data: bytes


@attrs.define
class _Assembly:
    root: bytes
    count: int
    size: int
    parts: dict[int, bytes] = attrs.field(factory=dict)
    held: int = 0
    touched: int = 0


def _uint(value: object, lo: int, hi: int, what: str) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise RemoteProtocolError(f"sync part: {what} must be an integer in {lo}..{hi}")
    return value


class Reassembler:
    """Collects parts per sender; see the module docstring for the bounds."""

    def __init__(self, *, max_message_bytes: int, max_assembly_bytes: int,
                 stale_ms: int) -> None:
        if not 2 <= max_message_bytes <= max_assembly_bytes or stale_ms < 0:
            raise ValueError("need 2 <= max_message_bytes <= max_assembly_bytes, "
                             "stale_ms >= 0")
        self.max_message_bytes = max_message_bytes
        self.max_assembly_bytes = max_assembly_bytes
        self.stale_ms = stale_ms
        self._by_sender: dict[str, _Assembly] = {}

    def __len__(self) -> int:
        """Transfers in progress."""
        return len(self._by_sender)

    def held_bytes(self) -> int:
        """Payload bytes held in parts, over all transfers in progress."""
        return sum(a.held for a in self._by_sender.values())

    def snapshot(self) -> tuple[Any, ...]:
        """A comparable picture of everything held (for tests of "nothing changed")."""
        return tuple(sorted((s, a.root, a.count, a.size, tuple(sorted(a.parts.items())))
                            for s, a in self._by_sender.items()))

    def parse(self, sender: str, body: object, now: int) -> Part:
        """Check ``body`` as a part from ``sender`` against the bounds and the
        transfer it belongs to; changes nothing."""
        if not isinstance(body, dict) or set(body) != _FIELDS:
            raise RemoteProtocolError("sync part is {h, i, n, z, b, m}")
        root, data = body["h"], body["b"]
        if not isinstance(root, bytes) or len(root) != DIGEST_BYTES:
            raise RemoteProtocolError(f"sync part: h must be {DIGEST_BYTES} bytes")
        size = _uint(body["z"], 2, self.max_message_bytes, "z")
        count = _uint(body["n"], 2, min(size, MAX_PARTS), "n")
        index = _uint(body["i"], 0, count - 1, "i")
        if not isinstance(data, bytes) or not 1 <= len(data) <= size:
            raise RemoteProtocolError(f"sync part: b must be 1..{size} bytes")
        proof = body["m"]
        if (not isinstance(proof, list) or len(proof) > MAX_PROOF
                or not all(isinstance(h, bytes) and len(h) == DIGEST_BYTES for h in proof)):
            raise RemoteProtocolError(f"sync part: m must be at most {MAX_PROOF} hashes "
                                      f"of {DIGEST_BYTES} bytes")
        if _root_from_proof(index, count, _leaf(data), proof) != root:
            raise RemoteProtocolError("sync part: its proof does not lead to its root h")
        part = Part(root, index, count, size, data)
        current = self._by_sender.get(sender)
        if current is not None and current.root == root:
            if (current.count, current.size) != (count, size):
                raise RemoteProtocolError("sync part disagrees with its transfer's n or z")
            if index not in current.parts:
                held = current.held + len(data)
                last = len(current.parts) + 1 == count
                if held > size or (last and held != size):
                    raise RemoteProtocolError("sync part: the parts do not add up to z")
            return part
        self._room_for(sender, size, now)
        return part

    def _room_for(self, sender: str, size: int, now: int) -> None:
        """Raise unless a new transfer of ``size`` from ``sender`` fits (counting
        transfers idle for ``stale_ms`` as evictable)."""
        others = [a for s, a in self._by_sender.items() if s != sender]
        live = [a for a in others if now - a.touched < self.stale_ms]
        if (sum(a.size for a in live) + size > self.max_assembly_bytes
                or len(live) + 1 > MAX_ASSEMBLIES):
            raise RemoteProtocolError(
                f"sync part: no room for a transfer of {size} bytes "
                f"({len(live)} in progress)")

    def assembled(self, sender: str, part: Part) -> bytes | None:
        """The whole payload if ``part`` (checked by :meth:`parse`) completes its
        transfer, else ``None``; changes nothing. Every kept part was proven to belong
        to the transfer's root, so the whole is the payload that root names."""
        current = self._by_sender.get(sender)
        if current is None or current.root != part.root:
            return None  # a first part never completes: count >= 2
        if part.index in current.parts or len(current.parts) + 1 != current.count:
            return None
        pieces = {**current.parts, part.index: part.data}
        return b"".join(pieces[i] for i in range(current.count))

    def store(self, sender: str, part: Part, now: int) -> None:
        """Keep ``part`` (checked by :meth:`parse`); a part of a new root replaces
        the sender's transfer in progress and evicts idle ones to make room."""
        current = self._by_sender.get(sender)
        if current is None or current.root != part.root:
            self._evict_stale(now, exclude=sender)
            current = _Assembly(part.root, part.count, part.size)
            self._by_sender[sender] = current
        if part.index not in current.parts:
            current.parts[part.index] = part.data
            current.held += len(part.data)
        current.touched = now

    def finish(self, sender: str) -> None:
        """Forget ``sender``'s transfer (its payload was delivered)."""
        self._by_sender.pop(sender, None)

    def clear(self) -> None:
        self._by_sender.clear()

    def _evict_stale(self, now: int, exclude: str) -> None:
        for s in [s for s, a in self._by_sender.items()
                  if s != exclude and now - a.touched >= self.stale_ms]:
            del self._by_sender[s]
