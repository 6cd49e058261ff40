"""vsm-phoenix: replicate state without coordination, talk securely, agree when you must.

Sub-packages:

* :mod:`vsm_phoenix.crdt` -- join-semilattice replicated data types, clocks, the codec.
* :mod:`vsm_phoenix.protocol` -- sans-IO protocol state machines and the simulator.
* :mod:`vsm_phoenix.crypto` -- sealed messages, keysets, replay protection, signatures.
* :mod:`vsm_phoenix.verify` -- linearizability checker and model checker.
* :mod:`vsm_phoenix.ext` -- reference clients (AMQP runner and friends).
"""

from __future__ import annotations

from vsm_phoenix.errors import (
    AuthenticationError,
    DecodeError,
    ReplayError,
    VsmPhoenixError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "DecodeError",
    "ReplayError",
    "VsmPhoenixError",
    "__version__",
]
