"""Broker URLs: the default, and hiding their passwords (no AMQP library needed, so
the command line can use it before knowing whether the ``amqp`` extra is installed)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DEFAULT_AMQP_URL", "redact"]

DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"
_USERINFO = re.compile(r"(?P<scheme>amqps?://)(?P<user>[^:@/\s]*):(?P<password>[^@\s]*)@")


def redact(text: str, url: str | None = None) -> str:
    """``text`` with every AMQP URL password replaced by ``***`` (and the password of
    ``url`` wherever it appears alone): for anything printed or logged."""
    out = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    if url:
        found = _USERINFO.search(url)
        if found and len(found["password"]) >= 4:
            out = out.replace(found["password"], "***")
    return out
