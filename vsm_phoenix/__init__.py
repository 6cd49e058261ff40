"""vsm-phoenix: replicate state without coordination, talk securely, agree when you must.

Sub-packages:

* :mod:`vsm_phoenix.crdt` -- join-semilattice replicated data types, clocks, the codec.
* :mod:`vsm_phoenix.protocol` -- sans-IO protocol state machines and the simulator.
* :mod:`vsm_phoenix.crypto` -- sealed messages, keysets, replay protection, signatures.
* :mod:`vsm_phoenix.verify` -- linearizability checker and model checker.
* :mod:`vsm_phoenix.ext` -- reference clients: the AMQP runner and the ``Cluster``
  library API (:mod:`vsm_phoenix.ext.amqp`).
* :mod:`vsm_phoenix.cli` -- the ``vsm-phoenix`` command.

Every error is importable from here and from the package that raises it (see
ARCHITECTURE.md, "Error rules").
"""

from __future__ import annotations

from vsm_phoenix.errors import (
    AuthenticationError,
    CapacityError,
    DecodeError,
    InvalidArgument,
    KeyExpiredError,
    KeyNotFoundError,
    PermissionDenied,
    ReplayError,
    SizeOverflow,
    TypeMismatch,
    VsmPhoenixError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CapacityError",
    "DecodeError",
    "InvalidArgument",
    "KeyExpiredError",
    "KeyNotFoundError",
    "PermissionDenied",
    "ReplayError",
    "SizeOverflow",
    "TypeMismatch",
    "VsmPhoenixError",
    "__version__",
]
