"""Every error the README names is importable from the package that raises it, and
every public name a package advertises exists."""

from __future__ import annotations

import builtins
import importlib
import re
from pathlib import Path

import pytest

import vsm_phoenix.errors as errors

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")

#: package -> the errors it raises (and so re-exports)
RAISES = {
    "vsm_phoenix": list(errors.__all__),
    "vsm_phoenix.crdt": ["DecodeError", "InvalidArgument", "TypeMismatch"],
    "vsm_phoenix.crypto": ["AuthenticationError", "CapacityError", "DecodeError",
                           "KeyExpiredError", "KeyNotFoundError", "PermissionDenied",
                           "ReplayError", "UnknownKeyError"],
    "vsm_phoenix.protocol": ["DecodeError", "InvalidArgument", "LocalProtocolError",
                             "RemoteProtocolError"],
    "vsm_phoenix.verify": ["DecodeError", "InvalidArgument"],
    "vsm_phoenix.ext.agents": ["AuthenticationError", "DecodeError", "InvalidArgument",
                               "PermissionDenied", "TypeMismatch"],
    "vsm_phoenix.ext.evidence": ["AuthenticationError", "DecodeError", "InvalidArgument",
                                 "TypeMismatch"],
    "vsm_phoenix.ext.breaker": ["CallNotPermittedError"],
    "vsm_phoenix.ext.saga": ["DecodeError", "InvalidArgument", "LeaseHeld", "PermanentError",
                             "TypeMismatch"],
    "vsm_phoenix.ext.router": ["AuthenticationError", "DecodeError", "InvalidArgument",
                               "PermissionDenied", "ReplayError", "TypeMismatch"],
    "vsm_phoenix.ext.amqp": ["AuthenticationError", "CapacityError", "ControlError",
                             "DecodeError", "KeyExpiredError", "NodeFenced",
                             "PermissionDenied", "ReplayError", "TypeMismatch"],
}


@pytest.mark.parametrize("package", sorted(RAISES))
def test_packages_re_export_the_errors_they_raise(package: str) -> None:
    if package == "vsm_phoenix.ext.amqp":
        pytest.importorskip("aio_pika")
    module = importlib.import_module(package)
    for name in RAISES[package]:
        error = getattr(module, name)
        assert issubclass(error, errors.VsmPhoenixError), name
        assert name in module.__all__, (package, name)


def test_every_error_the_readme_names_is_exported_somewhere() -> None:
    named = set(re.findall(r"`([A-Z][A-Za-z]+(?:Error|Denied|Fenced))`", README))
    named -= {n for n in named if hasattr(builtins, n)}  # TypeError, TimeoutError, ...
    assert {"DecodeError", "AuthenticationError", "PermissionDenied"} <= named
    exported = {n for names in RAISES.values() for n in names}
    assert named <= exported, named - exported


def test_ext_amqp_names_resolve() -> None:
    pytest.importorskip("aio_pika")
    import vsm_phoenix.ext.amqp as amqp

    for name in amqp.__all__:
        assert getattr(amqp, name) is not None, name
    with pytest.raises(AttributeError):
        amqp.NoSuchThing  # noqa: B018
