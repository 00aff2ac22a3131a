"""Errors of the gateway package (CONVENTIONS.md habit 4: typed errors, data on the exception).

Outside data (MQTT payloads, HTTP bodies, config files) only ever raises these::

    GatewayError
    ├── ConfigError          a config file or environment override that is not valid
    ├── InvalidEvent         a ChirpStack event that does not parse (bad JSON/protobuf, wrong
    │                        types, bad base64, unknown event type)
    ├── StoreError           the store cannot be opened, migrated or written
    │   ├── StoreConflict        another instance changed a device this batch wrote (PostgreSQL)
    │   └── DeviceBusy           another instance is processing this device right now
    ├── ChirpStackApiError   ChirpStack's gRPC API failed or refused a call (``code``)
    │   └── StoreGone            its database went away under the running gateway (file
    │                            deleted or replaced, connection lost): reopen, stage again
    ├── RouteError           a collection route cannot be planned (config, road graph, bins)
    ├── CampaignRejected     a FUOTA campaign that cannot start (bundle, group, signature)
    └── CommandError         a command that cannot be accepted
        ├── UnknownDevice        no such device in the registry
        ├── UnknownGroup         no registry group of that name (no member of the command's kind)
        ├── CommandRejected      wrong message for the device kind, bad fields
        ├── PayloadTooLarge      the encoded payload exceeds the device's data rate limit
        └── NotCancellable       the command already left the gateway's queue, or is finished

Errors from ``protocol`` (``ProtocolError``) are translated at the boundary with
``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CampaignRejected",
    "ChirpStackApiError",
    "CommandError",
    "CommandRejected",
    "ConfigError",
    "DeviceBusy",
    "GatewayError",
    "InvalidEvent",
    "NotCancellable",
    "PayloadTooLarge",
    "RouteError",
    "StoreConflict",
    "StoreError",
    "StoreGone",
    "UnknownDevice",
    "UnknownGroup",
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


class StoreConflict(StoreError):
    """The batch cannot be committed as staged: another instance changed one of its devices
    since this one read it (gateway/store/postgres.py, version check). Nothing was written; the
    caller drops the batch, reloads those devices and lets the broker redeliver."""


class NotCommitted(StoreError):
    """An API change was made, but the commit that held it failed (the store fell over between
    the last good commit and this one): it stays staged and is committed when the store
    commits again, unless the process stops first. Its message says so (503
    ``store_unavailable``): the client checks before sending it again."""


class DeviceBusy(StoreError):
    """Another instance holds the device right now (``pg_try_advisory_xact_lock`` refused); the
    caller commits its own batch and then waits for the device (``claim_device(wait=True)``)."""


class ChirpStackApiError(GatewayError):
    """ChirpStack's gRPC API is unreachable or refused a call; ``code`` is the gRPC status name."""


class StoreGone(StoreError):
    """The database the store had open is no longer the one at its address (the SQLite file was
    deleted or replaced, the server connection was lost). Nothing in the failed commit counts as
    stored; :meth:`gateway.store.base.Store.reopen` connects again."""


class RouteError(GatewayError):
    """A collection route cannot be planned; the message names the key, bin or file at fault."""


class CampaignRejected(GatewayError):
    """A FUOTA campaign refused before it starts; ``reason`` is a short code for the API."""


class CommandError(GatewayError):
    """A command that cannot be accepted."""


class UnknownDevice(CommandError):
    """The device is not in the registry."""


class UnknownGroup(CommandError):
    """No registered device of the command's kind is in the group."""


class CommandRejected(CommandError):
    """The message does not fit the device kind, or its fields do not encode."""


class PayloadTooLarge(CommandError):
    """The encoded payload is larger than the device's current data rate allows."""


class NotCancellable(CommandError):
    """Carries ``command_id`` (the command's UUID) and ``state``."""
