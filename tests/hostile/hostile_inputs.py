"""Hostile inputs: CBOR bombs built byte by byte, and a seeded mutation engine.

Two halves, both used by the hostile-input tests and by ``fuzz.py``:

* **Bomb builders** write CBOR by hand (cbor2 would refuse to *encode* most of these
  shapes): value-sharing chains (tags 28/29), string-reference namespaces (tags
  256/25), nesting far past the parser's depth cap, length prefixes that claim
  2**63 bytes, and integers of 10**5000 as bignums. :func:`shared_ref_bomb` expands to
  ``2**levels`` copies of its leaf when a general CBOR decoder accepts it.
* :class:`Mutator` turns valid seed encodings into hostile variants, deterministically
  from a ``random.Random``: bit flips, interesting bytes, truncations, extensions,
  splices of two seeds, random CBOR, huge length prefixes, deep nesting, shared- and
  string-reference chains, and *structure-aware* edits that parse a seed (with the
  project's strict parser, never a general one), replace one node by a hostile value
  (huge or boundary integers, NaN, wrong types, bombs) and re-encode it canonically so
  that it reaches the decoder's semantic checks. JSON and line-oriented text seeds get
  their own structure-aware edits (huge number literals, deep brackets, invalid UTF-8).
"""

from __future__ import annotations

import json
import math
import random
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from vsm_phoenix import cbor
from vsm_phoenix.errors import DecodeError

__all__ = [
    "GRAMMARS",
    "Mutator",
    "big_int_literal",
    "bignum",
    "corpus",
    "deep_nesting",
    "head",
    "huge_length",
    "largest_shared_ref_bomb",
    "shared_ref_bomb",
    "string_ref_bomb",
    "wide",
]

#: The seed grammars the structure-aware edits know (``bytes``: byte-level only).
GRAMMARS = ("cbor", "json", "text", "bytes")


# -- CBOR by hand --------------------------------------------------------------------
def head(major: int, value: int, width: int | None = None) -> bytes:
    """A CBOR item head: major type and argument, minimal unless ``width`` (1, 2, 4
    or 8 bytes of argument) is forced."""
    if width is None:
        if value < 24:
            return bytes([major << 5 | value])
        width = 1 if value < 2**8 else 2 if value < 2**16 else 4 if value < 2**32 else 8
    ai = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | ai]) + value.to_bytes(width, "big")


def tag(number: int) -> bytes:
    return head(6, number)


def array(items: Sequence[bytes]) -> bytes:
    return head(4, len(items)) + b"".join(items)


def text(s: str) -> bytes:
    raw = s.encode()
    return head(3, len(raw)) + raw


def bstr(raw: bytes) -> bytes:
    return head(2, len(raw)) + raw


def shared_ref_bomb(levels: int, leaf: bytes = b"x" * 16, fanout: int = 2) -> bytes:
    """``[28(leaf), 28([29(0), 29(0)]), 28([29(1), 29(1)]), ...]``: item ``i`` shares
    ``fanout`` references to item ``i - 1``, so the last one stands for
    ``fanout**levels`` leaves. A decoder that honours tags 28/29 builds it in linear
    time; anything that then walks or re-encodes the value (a canonical check) does
    exponential work."""
    items = [tag(28) + bstr(leaf)]
    for i in range(1, levels + 1):
        ref = tag(29) + head(0, i - 1)
        items.append(tag(28) + array([ref] * fanout))
    return array(items)


def largest_shared_ref_bomb(budget: int, leaf: bytes = b"x", fanout: int = 4) -> bytes:
    """The deepest :func:`shared_ref_bomb` of at most ``budget`` bytes."""
    levels = 0
    while len(shared_ref_bomb(levels + 1, leaf, fanout)) <= budget:
        levels += 1
    return shared_ref_bomb(levels, leaf, fanout)


def string_ref_bomb(refs: int, length: int = 64) -> bytes:
    """``256([s, 25(0), 25(0), ...])``: one ``length``-byte string, then ``refs``
    two-byte references that a stringref-aware decoder expands into full copies."""
    body = [text("s" * length)] + [tag(25) + head(0, 0)] * refs
    return tag(256) + array(body)


def deep_nesting(depth: int, kind: str = "array", core: bytes = b"\x00") -> bytes:
    """``depth`` nested containers around ``core``: ``[[[...]]]``, ``{"a": {...}}`` or
    a chain of (refused) tags."""
    if kind == "array":
        return b"\x81" * depth + core
    if kind == "map":
        return b"\xa1\x61a" * depth + core
    if kind == "tag":
        return b"\xd8\x1c" * depth + core  # 28(28(28(...)))
    raise ValueError(kind)


def wide(n: int, kind: str = "arrays") -> bytes:
    """One flat container of ``n`` small items, the most objects per input byte a
    parser builds: empty arrays, small ints, one-character strings, or a map with
    ``n`` distinct short keys."""
    if kind == "arrays":
        return head(4, n) + b"\x80" * n
    if kind == "ints":
        return head(4, n) + bytes(i % 24 for i in range(n))
    if kind == "strings":
        return head(4, n) + b"\x61a" * n
    if kind == "map":
        return head(5, n) + b"".join(text(f"{i:x}") + b"\x00" for i in range(n))
    raise ValueError(kind)


def huge_length(major: int, length: int = 2**63, tail: bytes = b"\x00" * 8) -> bytes:
    """A string/array/map head claiming ``length`` items or bytes, then a short tail."""
    return head(major, length, width=8) + tail


def bignum(value: int) -> bytes:
    """``value`` as a tag 2/3 bignum, whatever its size (cbor2 writes these too)."""
    if value < 0:
        n = -1 - value
        return tag(3) + bstr(n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big"))
    return tag(2) + bstr(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def big_int_literal(digits: int = 5001) -> str:
    """The decimal text of ``10**(digits - 1)`` without building the int (Python
    refuses to format one over 4,300 digits)."""
    return "1" + "0" * (digits - 1)


# -- hostile values for structure-aware edits ----------------------------------------


class _Raw:
    """Raw CBOR bytes standing in for one value inside a tree being re-encoded."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _hostile_cbor_value(rng: random.Random) -> Any:
    choice = rng.randrange(24)
    if choice == 0:
        return rng.choice([2**64 - 1, -(2**64), 2**63, 2**63 - 1, -(2**63) - 1, 2**32, -1])
    if choice == 1:
        return _Raw(bignum(10**5000 if rng.random() < 0.5 else -(10**5000)))
    if choice == 2:
        return _Raw(bignum(rng.choice([2**64, 2**8192 - 1, 2**8192, 2**70])))
    if choice == 3:
        return rng.choice([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 0.5])
    if choice == 4:
        return rng.choice([None, True, False])
    if choice == 5:
        return rng.choice(["", "x" * rng.randrange(1, 300), "\u0000", "\U0010ffff", "é"])
    if choice == 6:
        return rng.choice([b"", bytes(rng.randrange(1, 70)), b"\xff" * 33])
    if choice == 7:
        return [rng.randrange(-3, 3) for _ in range(rng.randrange(0, 5))]
    if choice == 8:
        return {"": None, "x": rng.randrange(10)} if rng.random() < 0.5 else {}
    if choice == 9:
        return _Raw(deep_nesting(rng.choice([100, 510, 511, 512, 513, 600, 5000]),
                                 rng.choice(["array", "map"])))
    if choice == 10:
        return _Raw(shared_ref_bomb(rng.randrange(1, 40)))
    if choice == 11:
        return _Raw(string_ref_bomb(rng.randrange(1, 200)))
    if choice == 12:
        return _Raw(tag(rng.choice([0, 1, 4, 5, 21, 24, 30, 55799, 258, 259, 2**64 - 1]))
                    + head(0, rng.randrange(100)))
    if choice == 13:
        return _Raw(huge_length(rng.choice([2, 3, 4, 5])))
    if choice == 14:
        return _Raw(b"\x9f\x01\xff")  # indefinite array
    if choice == 15:
        return _Raw(b"\xa2\x61a\x01\x61a\x02")  # duplicate keys
    if choice == 16:
        return _Raw(b"\xa1\x01\x02")  # int map key
    if choice == 17:
        return _Raw(b"\xa1\x82\x01\x02\x03")  # array map key
    if choice == 18:
        return _Raw(b"\xf9\x7e\x01")  # a NaN with a payload (not canonical)
    if choice == 19:
        return _Raw(b"\x18\x01")  # non-minimal int
    if choice == 20:
        return _Raw(b"\x62\xc3\x28")  # invalid UTF-8 text
    if choice == 21:
        return _Raw(b"\xf7")  # undefined
    if choice == 22:
        return _Raw(b"\xe0")  # simple value 0
    return rng.randrange(-(2**64), 2**64)


def _encode_tree(value: Any) -> bytes:
    """Canonical CBOR of a tree that may hold :class:`_Raw` splices (map keys sorted
    length first, then bytewise, as cbor2's canonical encoder does)."""
    if isinstance(value, _Raw):
        return value.data
    if isinstance(value, list):
        return array([_encode_tree(v) for v in value])
    if isinstance(value, dict):
        pairs = sorted(((_encode_tree(k), _encode_tree(v)) for k, v in value.items()),
                       key=lambda kv: (len(kv[0]), kv[0]))
        return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)
    return cbor.dumps(value)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out = [(path, value)]
    if isinstance(value, list):
        for i, v in enumerate(value):
            out += _nodes(v, (*path, i))
    elif isinstance(value, dict):
        for k, v in value.items():
            out += _nodes(v, (*path, k))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    first, rest = path[0], path[1:]
    if isinstance(value, list):
        copy = list(value)
        copy[first] = _replace(value[first], rest, new)
        return copy
    copy_d = dict(value)
    copy_d[first] = _replace(value[first], rest, new)
    return copy_d


def _parse_cbor(data: bytes) -> Any:
    """Parse with the project's strict parser (a seed might carry a bomb already)."""
    return cbor.loads(data, canonical=False, bignums=True, wire=True)


# -- the mutation engine --------------------------------------------------------------
_INTERESTING = [0x00, 0x01, 0x17, 0x18, 0x1B, 0x1F, 0x3F, 0x5B, 0x5F, 0x7B, 0x7F, 0x80,
                0x9B, 0x9F, 0xA0, 0xBB, 0xBF, 0xC2, 0xC3, 0xD8, 0xD9, 0xDB, 0xF4, 0xF6,
                0xF7, 0xF9, 0xFA, 0xFB, 0xFF]


class Mutator:
    """Hostile variants of ``seeds`` (see the module docstring), one per call.

    ``grammar`` selects the structure-aware edits: ``"cbor"`` seeds are parsed and
    edited as CBOR trees (recursing into byte strings that hold CBOR themselves, such
    as envelope payloads and batched frames), ``"json"`` as JSON documents or JSON
    Lines, ``"text"`` as lines; ``"bytes"`` gets byte-level edits only.
    """

    def __init__(self, seeds: Sequence[bytes], rng: random.Random, grammar: str = "cbor"):
        if not seeds:
            raise ValueError("a mutator needs at least one seed")
        if grammar not in GRAMMARS:
            raise ValueError(f"grammar must be one of {GRAMMARS}")
        self.seeds = list(seeds)
        self.rng = rng
        self.grammar = grammar
        self._trees: dict[int, Any] = {}
        byte_level: list[tuple[str, Callable[[bytes], bytes], int]] = [
            ("bitflip", self._bitflip, 6),
            ("bytes", self._interesting, 4),
            ("truncate", self._truncate, 3),
            ("extend", self._extend, 3),
            ("splice", self._splice, 3),
            ("chunk", self._chunk, 2),
        ]
        generic_cbor = [
            ("random-cbor", self._random_cbor, 1),
            ("huge-length", self._huge_length, 1),
            ("deep", self._deep, 1),
            ("refs", self._refs, 1),
        ]
        if grammar == "cbor":
            self._strategies = byte_level + generic_cbor + [("tree", self._tree, 8)]
        elif grammar == "json":
            self._strategies = [*byte_level, ("json", self._json, 8)]
        elif grammar == "text":
            self._strategies = [*byte_level, ("lines", self._lines, 6)]
        else:
            self._strategies = byte_level + generic_cbor
        self._weights = [w for _, _, w in self._strategies]

    def __call__(self) -> tuple[str, bytes]:
        """One hostile input and the name of the (last) strategy that made it."""
        data = self.rng.choice(self.seeds)
        name = "seed"
        for _ in range(1 + (self.rng.random() < 0.25)):  # sometimes stack two edits
            name, fn, _ = self.rng.choices(self._strategies, self._weights)[0]
            data = fn(data)
        return name, data

    # -- byte level -----------------------------------------------------------------
    def _bitflip(self, data: bytes) -> bytes:
        if not data:
            return b"\x00"
        out = bytearray(data)
        for _ in range(self.rng.choice([1, 1, 1, 2, 4])):
            i = self.rng.randrange(len(out))
            out[i] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def _interesting(self, data: bytes) -> bytes:
        if not data:
            return bytes([self.rng.choice(_INTERESTING)])
        out = bytearray(data)
        for _ in range(self.rng.choice([1, 1, 2, 3])):
            out[self.rng.randrange(len(out))] = self.rng.choice(_INTERESTING)
        return bytes(out)

    def _truncate(self, data: bytes) -> bytes:
        if len(data) < 2:
            return b""
        return data[: self.rng.randrange(len(data))] if self.rng.random() < 0.7 else data[
            self.rng.randrange(1, len(data)):]

    def _extend(self, data: bytes) -> bytes:
        r = self.rng.random()
        if r < 0.3:
            return data + data  # a second item / frame after the first
        if r < 0.6:
            return data + self.rng.randbytes(self.rng.randrange(1, 16))
        if r < 0.8:
            return data + b"\x00"
        return self.rng.randbytes(self.rng.randrange(1, 8)) + data

    def _splice(self, data: bytes) -> bytes:
        other = self.rng.choice(self.seeds)
        a = self.rng.randrange(len(data) + 1)
        b = self.rng.randrange(len(other) + 1)
        return data[:a] + other[b:]

    def _chunk(self, data: bytes) -> bytes:
        if not data:
            return self.rng.randbytes(4)
        a = self.rng.randrange(len(data))
        b = min(len(data), a + self.rng.randrange(1, 32))
        r = self.rng.random()
        if r < 0.4:
            return data[:a] + data[b:]  # delete
        if r < 0.7:
            return data[:a] + data[a:b] * self.rng.randrange(2, 40) + data[b:]  # repeat
        return data[:a] + self.rng.randbytes(b - a) + data[b:]  # overwrite

    # -- generic CBOR ---------------------------------------------------------------
    def _random_cbor(self, data: bytes) -> bytes:
        def item(depth: int) -> bytes:
            r = self.rng.randrange(10 if depth < 4 else 6)
            if r == 0:
                return head(0, self.rng.choice([0, 23, 24, 255, 2**16, 2**32, 2**64 - 1]))
            if r == 1:
                return head(1, self.rng.randrange(2**64))
            if r == 2:
                return bstr(self.rng.randbytes(self.rng.randrange(40)))
            if r == 3:
                return text("t" * self.rng.randrange(40))
            if r == 4:
                return bytes([self.rng.choice([0xF4, 0xF5, 0xF6, 0xF7])])
            if r == 5:
                return b"\xfb" + struct.pack(">d", self.rng.choice([0.5, math.inf, 1e300]))
            if r == 6:
                return array([item(depth + 1) for _ in range(self.rng.randrange(5))])
            if r == 7:
                n = self.rng.randrange(4)
                return head(5, n) + b"".join(text(f"k{i}") + item(depth + 1) for i in range(n))
            if r == 8:
                return tag(self.rng.choice([2, 3, 24, 25, 28, 29, 256, 55799])) + item(depth + 1)
            return bytes([self.rng.randrange(256)])

        return item(0)

    def _huge_length(self, data: bytes) -> bytes:
        major = self.rng.choice([2, 3, 4, 5])
        length = self.rng.choice([2**63, 2**64 - 1, 2**32 - 1, 2**31, 10**9])
        h = head(major, length, width=8 if length >= 2**32 else 4)
        if data and self.rng.random() < 0.5:
            i = self.rng.randrange(len(data))
            return data[:i] + h + data[i:]
        return h + data[:64]

    def _deep(self, data: bytes) -> bytes:
        depth = self.rng.choice([64, 511, 512, 513, 1000, 20_000])
        kind = self.rng.choice(["array", "map", "tag"])
        core = data if self.rng.random() < 0.5 else b"\x00"
        return deep_nesting(depth, kind, core)

    def _refs(self, data: bytes) -> bytes:
        if self.rng.random() < 0.6:
            bomb = shared_ref_bomb(self.rng.randrange(1, 60), self.rng.randbytes(16))
        else:
            bomb = string_ref_bomb(self.rng.randrange(1, 500), self.rng.randrange(3, 200))
        if self.rng.random() < 0.5:
            return array([bomb, data]) if len(data) < 2**16 else bomb
        return bomb

    # -- structure-aware CBOR -------------------------------------------------------
    def _tree(self, data: bytes) -> bytes:
        try:
            tree = _parse_cbor(data)
            return _encode_tree(self._edit_tree(tree, 0))
        except (DecodeError, RecursionError):  # not CBOR, or too deep to walk here
            return self._bitflip(data)

    def _edit_tree(self, tree: Any, depth: int) -> Any:
        nodes = _nodes(tree)
        path, node = self.rng.choice(nodes)
        if isinstance(node, bytes) and depth < 3 and self.rng.random() < 0.6:
            try:  # a byte string holding CBOR (a payload, a frame, a CRDT): go inside
                inner = _parse_cbor(node)
            except DecodeError:
                inner = None
            if inner is not None:
                return _replace(tree, path, _encode_tree(self._edit_tree(inner, depth + 1)))
        r = self.rng.random()
        if r < 0.5:
            new = _hostile_cbor_value(self.rng)
        elif r < 0.65 and isinstance(node, dict) and node:  # drop or add a key
            copy = dict(node)
            if self.rng.random() < 0.5:
                del copy[self.rng.choice(list(copy))]
            else:
                copy[self.rng.choice(["x", "", "v", "t", "zz"])] = _hostile_cbor_value(self.rng)
            new = copy
        elif r < 0.8 and isinstance(node, list):
            copy_l = list(node)
            if copy_l and self.rng.random() < 0.5:
                del copy_l[self.rng.randrange(len(copy_l))]
            else:
                copy_l.insert(self.rng.randrange(len(copy_l) + 1), _hostile_cbor_value(self.rng))
            new = copy_l
        elif r < 0.9 and isinstance(node, int) and not isinstance(node, bool):
            new = node + self.rng.choice([-1, 1, 2**32, -(2**32), 2**63, -node - 1])
            if not -(2**64) <= new < 2**64:
                new = _Raw(bignum(new))
        else:
            other = self.rng.choice(nodes)[1]  # duplicate another part of the tree
            new = other
        return _replace(tree, path, new)

    # -- JSON -----------------------------------------------------------------------
    _JSON_TOKENS = (
        big_int_literal(5001), "-" + big_int_literal(4301), big_int_literal(4300),
        "1e999999", "-1e999999", "1" + "0" * 400 + ".5", "NaN", "Infinity", "-0",
        '"\\ud800"', '"' + "x" * 5000 + '"', "[" * 5000 + "]" * 5000,
        '{"a":' * 2000 + "1" + "}" * 2000, "[" * 990 + "]" * 990, "null", "true", "{}",
        "[]", '""', "18446744073709551616", "-9223372036854775809", "4294967296", "0.1",
    )

    def _json(self, data: bytes) -> bytes:
        try:
            return self._json_tree(data)
        except RecursionError:  # a line mutated earlier nests deeper than json can walk
            return self._bitflip(data)

    def _json_tree(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        idx = self.rng.randrange(len(lines))
        try:
            doc = json.loads(lines[idx])
        except ValueError:
            return self._bitflip(data)
        nodes = _nodes(doc)
        path, node = self.rng.choice(nodes)
        r = self.rng.random()
        marker = "\x00HOSTILE\x00"
        if r < 0.7:
            token = self.rng.choice(self._JSON_TOKENS)
            new_text = json.dumps(_replace(doc, path, marker)).replace(
                json.dumps(marker), token, 1)
        elif r < 0.85 and isinstance(node, dict):
            copy = dict(node)
            copy[self.rng.choice(["x", "version", "model", "client", "key"])] = marker
            new_text = json.dumps(_replace(doc, path, copy)).replace(
                json.dumps(marker), self.rng.choice(self._JSON_TOKENS), 1)
        else:
            new_text = json.dumps(_replace(doc, path, self.rng.choice(nodes)[1]))
        lines[idx] = new_text.encode()
        return b"\n".join(lines)

    # -- text lines -----------------------------------------------------------------
    _TEXT_TOKENS = (
        big_int_literal(5001), "9" * 31, "9" * 19, "-" + "9" * 18, "{" * 5000, "}",
        "[" * 1000, "nil", ":invoke", ":ok", ":fail", ":info", ":cas", "\\u0000", '"',
        "\t", "\r", "\x85", "\u2028", "INFO  jepsen.util - ", ",", ":process", "\\",
    )

    def _lines(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        r = self.rng.random()
        i = self.rng.randrange(len(lines))
        if r < 0.5:
            line = lines[i]
            pos = self.rng.randrange(len(line) + 1)
            token = self.rng.choice(self._TEXT_TOKENS).encode()
            lines[i] = line[:pos] + token + line[pos:]
        elif r < 0.65:
            lines.insert(i, lines[self.rng.randrange(len(lines))])  # duplicate a line
        elif r < 0.8 and len(lines) > 1:
            j = self.rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif r < 0.9:
            lines[i] = lines[i] + b"\xff\xfe\xc3"  # invalid UTF-8
        else:
            del lines[i]
        return b"\n".join(lines)


# -- a fixed corpus every target meets before the random inputs -----------------------
def corpus(grammar: str, seeds: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """Named hostile inputs for a target with these ``seeds``: the bomb families at a
    few sizes (alone, and spliced into each seed where a grammar allows), plus the
    empty input and each seed twice in a row (a second item after the first)."""
    out: list[tuple[str, bytes]] = [("empty", b"")]
    out += [(f"seed-twice-{i}", s + s) for i, s in enumerate(seeds[:4])]
    bombs: list[tuple[str, bytes]] = [
        *[(f"shared-ref-{n}", shared_ref_bomb(n)) for n in (8, 16, 32, 64)],
        *[(f"string-ref-{n}", string_ref_bomb(n)) for n in (16, 1024)],
        *[(f"deep-{k}-{d}", deep_nesting(d, k)) for k in ("array", "map", "tag")
          for d in (511, 512, 513, 100_000)],
        *[(f"huge-length-{m}", huge_length(m)) for m in (2, 3, 4, 5)],
        ("bignum-10**5000", bignum(10**5000)),
        ("bignum--10**5000", bignum(-(10**5000))),
        ("bignum-8193-bits", bignum(2**8192)),
        ("tag-24-embedded", tag(24) + bstr(shared_ref_bomb(8))),
        ("indefinite", b"\x9f" * 1000 + b"\xff" * 1000),
        *[(f"wide-{k}-{n}", wide(n, k)) for k in ("arrays", "ints", "map", "strings")
          for n in (1_000, 100_000)],
        ("long-bytes", bstr(bytes(1 << 20))),
    ]
    if grammar in ("cbor", "bytes"):
        out += bombs
    if grammar == "cbor":
        rng = random.Random(0)
        for i, seed in enumerate(seeds[:4]):
            try:
                tree = _parse_cbor(seed)
            except DecodeError:
                continue
            nodes = _nodes(tree)
            for name, bomb in [*bombs[:8], ("wide-arrays-10000", wide(10_000)),
                               ("wide-map-10000", wide(10_000, "map"))]:
                path, _ = rng.choice(nodes)
                out.append((f"{name}-in-seed-{i}", _encode_tree(_replace(tree, path, _Raw(bomb)))))
            for value in (10**5000, -(10**5000), 2**64, -(2**64) - 1):
                path, _ = rng.choice(nodes)
                out.append((f"int-{value.bit_length()}-bits-in-seed-{i}",
                            _encode_tree(_replace(tree, path, _Raw(bignum(value))))))
    if grammar in ("json", "text"):
        out += [
            ("deep-json", b"[" * 100_000 + b"]" * 100_000),
            ("big-int-json", big_int_literal(5001).encode()),
            ("invalid-utf8", b"\xff\xfe\xfd"),
            ("bom-only", "\ufeff".encode()),
            ("nul", b"\x00" * 64),
            ("long-line", b"x" * (1 << 21)),
        ]
    if grammar == "json":
        for i, seed in enumerate(seeds[:4]):
            first, _, rest = seed.partition(b"\n")
            for token in (big_int_literal(5001), big_int_literal(4300), "1e999999",
                          "[" * 990 + "]" * 990):
                out.append((f"json-{len(token)}-in-seed-{i}",
                            _json_replace_numbers(first, token) + b"\n" + rest))
                out.append((f"json-{len(token)}-in-seed-{i}-ops",
                            first + b"\n" + _json_replace_numbers(rest, token)))
    return out


def _json_replace_numbers(line: bytes, token: str) -> bytes:
    """Every JSON number literal in ``line`` replaced by ``token``."""
    return re.sub(rb"(?<![\w\"])-?\d+(\.\d+)?([eE][+-]?\d+)?(?![\w\"])", token.encode(), line)
