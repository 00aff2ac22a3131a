"""argparse value types shared by the subcommands; each refuses bad text with one clear line."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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
