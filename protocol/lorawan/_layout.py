"""The one place construct errors become protocol errors (CONVENTIONS.md habit 4).

Every layout in :mod:`protocol.lorawan` is parsed and built through :func:`parse` and
:func:`build`, so a ``construct.ConstructError`` never leaves the package: parsing raises
:class:`~protocol.errors.FrameError`, building :class:`~protocol.errors.EncodeError`, each with
the original chained (``raise … from exc``).
"""

from __future__ import annotations

from typing import Any

import construct as cs

from protocol.errors import EncodeError, FrameError


def parse(layout: Any, data: bytes, what: str = "a LoRaWAN field", **context: Any) -> Any:
    try:
        return layout.parse(bytes(data), **context)
    except cs.ConstructError as exc:
        raise FrameError(f"{what} does not parse: {exc}") from exc


def build(layout: Any, values: Any, what: str = "a LoRaWAN field", **context: Any) -> bytes:
    try:
        return bytes(layout.build(values, **context))
    except cs.ConstructError as exc:
        raise EncodeError(f"{what} cannot be encoded: {exc}") from exc
