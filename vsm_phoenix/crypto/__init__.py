"""Authenticated encryption and message integrity.

Will hold AES-256-GCM sealing with Tink-compatible keysets (rotation, expiry), HMAC-SHA256,
safe nonce management, replay windows, Ed25519 signatures and the ``SecureChannel`` the
protocol layer seals its envelopes with. Every primitive comes from ``cryptography``.
"""
