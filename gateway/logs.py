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

__all__ = ["JsonFormatter", "configure", "get_logger"]

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
    return logger
