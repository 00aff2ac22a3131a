"""Structured logs: one JSON object per line (journald and log shippers parse them as is).

``logger.info("uplink stored", extra={"dev_eui": ..., "f_cnt": ...})`` writes
``{"ts": ..., "level": "info", "logger": "citypack.gateway", "msg": "uplink stored",
"dev_eui": ..., "f_cnt": ...}``. The gateway takes any :class:`logging.Logger` (injectable, as
aiomqtt does); :func:`configure` sets up the JSON handler for ``citypack gateway run``.
Keys and tokens are never passed to a logger (ARCHITECTURE.md invariant 8).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = [
    "JsonFormatter",
    "RateLimit",
    "configure",
    "get_logger",
    "loop_exception_handler",
    "quiet_logger",
]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(doc, default=str, separators=(",", ":"))


def get_logger(name: str = "citypack.gateway") -> logging.Logger:
    return logging.getLogger(name)


def configure(level: str = "INFO", stream: TextIO | None = None) -> logging.Logger:
    logger = get_logger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    # what uvicorn and asyncio log goes out as JSON too, a few lines a second at most
    # (otherwise Python's last-resort handler prints it as plain text)
    library = logging.StreamHandler(stream or sys.stderr)
    library.setFormatter(JsonFormatter())
    library.addFilter(RateLimit())
    for name in ("uvicorn", "asyncio"):
        other = logging.getLogger(name)
        other.handlers[:] = [library]
        other.propagate = False
    return logger


class RateLimit(logging.Filter):
    """Let at most ``per_s`` records a second through (a token bucket with a burst of
    ``per_s``); the next record that passes after some were held back says how many in
    ``suppressed``. Errors that repeat by the thousand (a refused ``accept()`` per connection
    attempt while file handles run out) then cost a few lines a second, not the disk."""

    def __init__(self, per_s: float = 3.0, *, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.per_s = per_s
        self.clock = clock
        self.tokens = per_s
        self.last = clock()
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        self.tokens = min(self.per_s, self.tokens + (now - self.last) * self.per_s)
        self.last = now
        if self.tokens < 1:
            self.suppressed += 1
            return False
        self.tokens -= 1
        if self.suppressed:
            record.suppressed = self.suppressed
            self.suppressed = 0
        return True


def loop_exception_handler(logger: logging.Logger) -> Any:
    """An asyncio exception handler that logs one JSON line per problem through ``logger``
    (asyncio's default prints a multi-line traceback per refused ``accept()``)."""

    def handle(loop: Any, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        extra: dict[str, Any] = {"context": str(context.get("message", ""))}
        if exc is not None:
            extra["error"] = f"{type(exc).__name__}: {exc}"
        logger.error("event loop error", extra=extra)

    return handle


def quiet_logger(name: str, per_s: float = 3.0) -> logging.Logger:
    """A child of the gateway's logger whose records are rate-limited (see :class:`RateLimit`)."""
    logger = logging.getLogger(f"citypack.gateway.{name}")
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit(per_s))
    return logger
