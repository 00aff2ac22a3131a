"""Generators of the codecs that other runtimes use, from :mod:`protocol.catalogue`.

- ``firmware/lib/citypack_payloads.py`` (:mod:`protocol.codegen.python`): MicroPython + CPython.
- ``protocol/generated/chirpstack_codec.js`` (:mod:`protocol.codegen.javascript`): ChirpStack v4.
- ``protocol/generated/os2iot_decoder.js`` (:mod:`protocol.codegen.os2iot`): OS2iot's payload
  decoder, for the data targets of a city that runs OS2iot.

Both are plain text rendered deterministically from the catalogue (no timestamps, stable order),
so ``citypack codegen --check`` can compare them byte for byte with what is on disk
(ARCHITECTURE.md invariant 1: a stale generated file fails CI).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from protocol.codegen import javascript, os2iot, python

__all__ = ["ROOT", "TARGETS", "render_all", "stale", "write"]

ROOT = Path(__file__).resolve().parents[2]
"""The checkout the generated files live in (protocol/ sits at its top)."""

TARGETS: dict[str, Callable[[], str]] = {
    "firmware/lib/citypack_payloads.py": python.render,
    "protocol/generated/chirpstack_codec.js": javascript.render,
    "protocol/generated/os2iot_decoder.js": os2iot.render,
}
"""Path relative to the checkout -> renderer."""


def render_all() -> dict[str, str]:
    """Every generated file's text, by path relative to the checkout."""
    return {path: render() for path, render in TARGETS.items()}


def _differing(root: Path) -> dict[str, str]:
    """Fresh text of each generated file under ``root`` that is missing or differs on disk."""
    out = {}
    for path, text in render_all().items():
        try:
            current: str | None = (root / path).read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            out[path] = text
    return out


def stale(root: Path = ROOT) -> list[str]:
    """The generated files under ``root`` that are missing or differ from a fresh render."""
    return list(_differing(root))


def write(root: Path = ROOT) -> list[str]:
    """Write every generated file under ``root``; return the paths that changed."""
    changed = _differing(root)
    for path, text in changed.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return list(changed)
