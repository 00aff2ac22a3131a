"""Modules imported at first use (the standard library's ``importlib.util.LazyLoader``, as the
Python docs' "Implementing lazy imports" recipe has it).

For the gRPC stack only: ``grpc`` and the ``chirpstack-api`` stubs take about 35 MB of a
process's memory at import, and a gateway talks gRPC only with ``[chirpstack] api`` set (group
commands, FUOTA, cancelling at ChirpStack). Issue 17 asks 100,000 devices in 200 MB; a gateway
without that key never executes either package. Nothing here reaches into a library's internals.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["lazy_import"]


def lazy_import(name: str) -> ModuleType:
    """``name`` as a module whose code runs at the first attribute read (the real module when
    it is imported already)."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
