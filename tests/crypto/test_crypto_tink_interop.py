"""Interop with Google's ``tink`` package, both ways, for AEAD and MAC keysets."""

from __future__ import annotations

import pytest

tink = pytest.importorskip("tink")
from tink import aead as tink_aead  # noqa: E402
from tink import json_proto_keyset_format, secret_key_access  # noqa: E402
from tink import mac as tink_mac  # noqa: E402

from vsm_phoenix.crypto import KeyKind, Keyset, KeysetAead, KeysetMac  # noqa: E402
from vsm_phoenix.errors import AuthenticationError  # noqa: E402

tink_aead.register()
tink_mac.register()


def _to_tink(ks: Keyset) -> object:
    return json_proto_keyset_format.parse(ks.to_tink_json(), secret_key_access.TOKEN)


def _from_tink(handle: object) -> Keyset:
    return Keyset.from_tink_json(
        json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)
    )


def _rotated(kind: KeyKind) -> Keyset:
    ks = Keyset.generate(kind)
    ks.rotate(now=0.0)
    return ks


def test_we_seal_tink_opens() -> None:
    ks = Keyset.generate(KeyKind.AES256_GCM)
    ours = KeysetAead(ks)
    old = ours.encrypt(b"before rotation", b"ad")
    ks.rotate(now=0.0)
    new = ours.encrypt(b"after rotation", b"ad")
    theirs = _to_tink(ks).primitive(tink_aead.Aead)  # type: ignore[attr-defined]
    assert theirs.decrypt(old, b"ad") == b"before rotation"
    assert theirs.decrypt(new, b"ad") == b"after rotation"
    with pytest.raises(tink.TinkError):
        theirs.decrypt(new, b"other")


def test_tink_seals_we_open() -> None:
    handle = tink.new_keyset_handle(tink_aead.aead_key_templates.AES256_GCM)
    theirs = handle.primitive(tink_aead.Aead)
    ours = KeysetAead(_from_tink(handle))
    for payload in (b"", b"x", bytes(range(256)) * 8):
        ct = theirs.encrypt(payload, b"ad")
        assert ours.decrypt(ct, b"ad") == payload
    with pytest.raises(AuthenticationError):
        ours.decrypt(theirs.encrypt(b"y", b"ad"), b"bad")


def test_tink_multi_key_keyset_imports() -> None:
    manager = _rotated(KeyKind.AES256_GCM)
    handle = _to_tink(manager)
    back = _from_tink(handle)
    assert back.keys == manager.keys and back.primary_id == manager.primary_id


def test_we_tag_tink_verifies() -> None:
    ks = _rotated(KeyKind.HMAC_SHA256)
    ours = KeysetMac(ks)
    theirs = _to_tink(ks).primitive(tink_mac.Mac)  # type: ignore[attr-defined]
    tag = ours.compute(b"evidence")
    theirs.verify_mac(tag, b"evidence")
    with pytest.raises(tink.TinkError):
        theirs.verify_mac(tag, b"evidencE")


@pytest.mark.parametrize(
    "template",
    ["HMAC_SHA256_128BITTAG", "HMAC_SHA256_256BITTAG"],
)
def test_tink_tags_we_verify(template: str) -> None:
    handle = tink.new_keyset_handle(getattr(tink_mac.mac_key_templates, template))
    theirs = handle.primitive(tink_mac.Mac)
    ours = KeysetMac(_from_tink(handle))
    tag = theirs.compute_mac(b"record")
    ours.verify(tag, b"record")
    assert ours.compute(b"record") == tag  # HMAC is deterministic: same key, same tag
    with pytest.raises(AuthenticationError):
        ours.verify(tag, b"recorD")
