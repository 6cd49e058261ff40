"""What every sub-command shares: the argument parser that fails in one line, exit
statuses, the environment, and logging set-up.

Rules (ARCHITECTURE.md, "Error rules"): every bad argument or file is reported as one
line on stderr -- ``vsm-phoenix <command>: <what is wrong>`` -- with exit status 2,
*before* anything with a side effect happens (no file written, no broker contacted).
Tracebacks are for bugs, never for bad input.

Environment variables are read here and nowhere else in the package; library code takes
parameters:

=====================  ===============================================================
``AMQP_URL``           broker URL (default ``amqp://guest:guest@127.0.0.1:5672/``)
``VSM_PHOENIX_KEYS``   default directory of the cluster's keys (``--keys``)
=====================  ===============================================================

(``VSM_PHOENIX_PURE`` is read at import time by :mod:`vsm_phoenix.crdt` to choose the
kernels, and ``VSM_PHOENIX_REQUIRE_*`` only by the build and the tests.)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Final, NoReturn

from vsm_phoenix.ext.broker_url import DEFAULT_AMQP_URL, redact

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArgumentParser",
    "UsageError",
    "amqp_url",
    "configure_logging",
    "keys_dir",
    "require_amqp",
    "usage_exit",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

#: Third-party loggers whose warnings and errors (connection lost, reconnect attempts,
#: each with a traceback) are demoted to DEBUG: the adapter reports each reconnection
#: itself, in one WARNING line.
NOISY_LOGGERS: Final = ("aio_pika", "aiormq", "pamqp")


class UsageError(Exception):
    """A bad argument or file: reported in one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line
    (``<prog>: <message> (see --help)``) and exit status 2; ``--help`` still exits 0."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def usage_exit(prog: str, message: object, stream: IO[str] | None = None) -> int:
    """Print ``<prog>: <message>`` as one line and return :data:`EXIT_USAGE`."""
    text = " ".join(str(message).split()) or "invalid usage"
    print(f"{prog}: {text}", file=stream or sys.stderr)
    return EXIT_USAGE


def amqp_url(given: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``given``, else ``$AMQP_URL``, else :data:`DEFAULT_AMQP_URL`."""
    environ = os.environ if env is None else env
    return given or environ.get("AMQP_URL") or DEFAULT_AMQP_URL


def keys_dir(given: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """``given``, else ``$VSM_PHOENIX_KEYS``, else ``None``."""
    environ = os.environ if env is None else env
    return given or environ.get("VSM_PHOENIX_KEYS") or None


class _Redact(logging.Filter):
    """Removes the broker password from every log record."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.url)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.url)
        return True


class _Demote(logging.Filter):
    """Third-party connection chatter: WARNING and above become DEBUG (with their
    tracebacks); the record is dropped unless DEBUG is enabled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] not in NOISY_LOGGERS:
            return True
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def require_amqp() -> None:
    """``UsageError`` (one line) when the ``amqp`` extra (aio-pika) is not installed."""
    try:
        import aio_pika  # noqa: F401
    except ImportError:
        raise UsageError("this command needs the amqp extra: pip install 'vsm-phoenix[amqp]'"
                         ) from None


def parse_level(name: str) -> int:
    """A logging level by name (``UsageError`` for an unknown name)."""
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {name!r} (DEBUG, INFO, WARNING, ERROR)")
    return level


def configure_logging(level: int, url: str, fmt: str) -> None:
    """Log to stderr at ``level`` with broker passwords redacted and third-party
    connection noise demoted to DEBUG (see :data:`NOISY_LOGGERS`)."""
    logging.basicConfig(level=level, format=fmt, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redact(url))
        handler.addFilter(_Demote())
