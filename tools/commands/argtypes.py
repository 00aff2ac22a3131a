"""argparse value types shared by the subcommands; each refuses bad text with one clear line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from urllib.parse import urlsplit

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def positive_number(text: str) -> float:
    """A number greater than 0 (speeds, durations, intervals)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def count(limit: int, what: str = "") -> Callable[[str], int]:
    """A whole number from 0 to ``limit``; ``what`` ends the message ("for the demo")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 0 <= value <= limit:
            suffix = f" {what}" if what else ""
            raise argparse.ArgumentTypeError(f"must be between 0 and {limit}{suffix}")
        return value

    return parse


def host_port(*, listen: bool) -> Callable[[str], tuple[str, int]]:
    """HOST:PORT; a port of 0 (any free port) only where we ``listen`` on it."""
    lowest = 0 if listen else 1

    def parse(text: str) -> tuple[str, int]:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not lowest <= int(port) <= 65535:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
        return host.strip("[]"), int(port)

    return parse


def uuid_text(text: str) -> str:
    """A UUID as ChirpStack writes its tenant, application and device-profile ids (lowercase)."""
    if not _UUID.match(text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a UUID like 52f14cd4-c6f1-4fbd-8f87-4025e1d49242, got {text[:60]!r}"
        )
    return text.strip().lower()


def host_port_text(text: str) -> str:
    """HOST:PORT kept as text (for a gRPC target), checked before anything connects."""
    host_port(listen=False)(text)
    return text


def http_url(text: str) -> str:
    """An http:// or https:// base URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT or https://HOST, got {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None
    return text.rstrip("/")
