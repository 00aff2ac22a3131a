"""Errors of the provisioning tools.

``ProvisionError`` is a :class:`tools.errors.CliError`, so the ``citypack`` command prints it as
one line (exit 2 for bad input, 1 for a failed operation). Parsers raise it with the file, the line
(CSV) or entry (TOML) and the field in the message, e.g.
``inventory.csv line 4, field dev_eui: expected 16 hex digits, got 'xyz'``.

    CliError
     └── ProvisionError
          ├── InventoryError      bad inventory or secrets file
          ├── TR005Error          bad TR005 QR string (``field`` names the element)
          ├── RegistrationError   ChirpStack / gateway registry refused or unreachable
          └── DeployError         bundle missing, copy or read-back verification failed
"""

from __future__ import annotations

from tools.errors import CliError


class ProvisionError(CliError):
    """A provisioning step failed; the message is one line and never contains key material."""


class InventoryError(ProvisionError):
    """An inventory or secrets file is malformed, or a node in it is invalid."""

    def __init__(
        self, message: str, *, where: str = "", field: str = "", exit_code: int = 2
    ) -> None:
        prefix = ", ".join(p for p in (where, f"field {field}" if field else "") if p)
        super().__init__(f"{prefix}: {message}" if prefix else message, exit_code=exit_code)
        self.where = where
        self.field = field


class TR005Error(ProvisionError):
    """A TR005 QR string does not follow the grammar; ``field`` names the element."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"TR005 {field}: {message}")
        self.field = field


class RegistrationError(ProvisionError):
    """A network server or the gateway registry refused the request or could not be reached."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


class DeployError(ProvisionError):
    """Writing the firmware bundle, config or keys to a board or directory failed."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message, exit_code=exit_code)
