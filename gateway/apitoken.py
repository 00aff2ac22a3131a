"""The API token file: at least 32 characters, readable by its owner only (issue 14).

A one-character token in a world-readable file was accepted; now ``citypack gateway run`` and
``citypack gateway check-config`` refuse it with one line that names the file and the problem,
never the token (ARCHITECTURE.md invariant 8). 32 characters of ``base64`` from 24 random bytes
(or ``secrets.token_urlsafe(32)``) carry at least 192 bits.
"""

from __future__ import annotations

import os
import stat

from gateway.config import read_secret
from gateway.errors import ConfigError

__all__ = ["MIN_TOKEN_CHARS", "read_api_token"]

MIN_TOKEN_CHARS = 32


def read_api_token(path: str) -> str:
    """The token in ``path``; :class:`ConfigError` when the file is missing, readable by group
    or others, or holds fewer than :data:`MIN_TOKEN_CHARS` characters."""
    token = read_secret(path)  # missing, unreadable, empty: "cannot read secret file ..."
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"api.token_file: {path} is open to group or others (mode {stat.S_IMODE(mode):04o});"
            f" chmod 600 {path}",
            key="api.token_file",
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"api.token_file: the token in {path} has {len(token)} characters, at least "
            f"{MIN_TOKEN_CHARS} are needed (e.g. head -c 32 /dev/urandom | base64)",
            key="api.token_file",
        )
    return token
