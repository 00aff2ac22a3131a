"""Errors of the gateway package (CONVENTIONS.md habit 4: typed errors, data on the exception).

Outside data (MQTT payloads, HTTP bodies, config files) only ever raises these::

    GatewayError
    ├── ConfigError          a config file or environment override that is not valid
    ├── InvalidEvent         a ChirpStack event that does not parse (bad JSON/protobuf, wrong
    │                        types, bad base64, unknown event type)
    ├── StoreError           the store cannot be opened, migrated or written
    │   └── StoreGone            its database went away under the running gateway (file
    │                            deleted or replaced, connection lost): reopen, stage again
    ├── RouteError           a collection route cannot be planned (config, road graph, bins)
    └── CommandError         a command that cannot be accepted
        ├── UnknownDevice        no such device in the registry
        ├── CommandRejected      wrong message for the device kind, bad fields
        ├── PayloadTooLarge      the encoded payload exceeds the device's data rate limit
        └── NotCancellable       the command already left the gateway's queue, or is finished

Errors from ``protocol`` (``ProtocolError``) are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CommandError",
    "CommandRejected",
    "ConfigError",
    "GatewayError",
    "InvalidEvent",
    "NotCancellable",
    "PayloadTooLarge",
    "RouteError",
    "StoreError",
    "StoreGone",
    "UnknownDevice",
]


class GatewayError(Exception):
    """Base of every gateway error on outside data; keyword context is kept as attributes."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)


class ConfigError(GatewayError):
    """A config file, key or environment override that is not valid (message names section.key)."""


class InvalidEvent(GatewayError):
    """A ChirpStack event payload that does not parse."""


class StoreError(GatewayError):
    """The store cannot be opened, migrated or written."""


class StoreGone(StoreError):
    """The database the store had open is no longer the one at its address (the SQLite file was
    deleted or replaced, the server connection was lost). Nothing in the failed commit counts as
    stored; :meth:`gateway.store.base.Store.reopen` connects again."""


class RouteError(GatewayError):
    """A collection route cannot be planned; the message names the key, bin or file at fault."""


class CommandError(GatewayError):
    """A command that cannot be accepted."""


class UnknownDevice(CommandError):
    """The device is not in the registry."""


class CommandRejected(CommandError):
    """The message does not fit the device kind, or its fields do not encode."""


class PayloadTooLarge(CommandError):
    """The encoded payload is larger than the device's current data rate allows."""


class NotCancellable(CommandError):
    """Carries ``command_id`` (the command's UUID) and ``state``."""
