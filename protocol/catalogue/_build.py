"""Short constructors for catalogue entries, so each message reads like a table."""

from __future__ import annotations

from typing import Any

from protocol.catalogue.model import Field, ItemField

COMMAND_ID_DESCRIPTION = "Small id chosen by the gateway; the command_result echoes it."
CONFIG_VERSION_DESCRIPTION = (
    "Version of the configuration the node runs (set by the last applied config downlink)."
)


def uint(
    name: str,
    key: int,
    minimum: int,
    maximum: int,
    unit: str,
    description: str,
    *,
    default: int | None = None,
    scale: int = 1,
) -> Field:
    return Field(
        name,
        key,
        "uint",
        description,
        unit=unit,
        scale=scale,
        minimum=minimum,
        maximum=maximum,
        default=default,
    )


def sint(
    name: str,
    key: int,
    minimum: int,
    maximum: int,
    unit: str,
    description: str,
    *,
    default: int | None = None,
    scale: int = 1,
) -> Field:
    return Field(
        name,
        key,
        "int",
        description,
        unit=unit,
        scale=scale,
        minimum=minimum,
        maximum=maximum,
        default=default,
    )


def flag(name: str, key: int, bit: int, description: str) -> Field:
    return Field(name, key, "bool", description, bit=bit, default=False)


def enum(
    name: str, key: int, choices: tuple[str, ...], description: str, *, default: str | None = None
) -> Field:
    return Field(name, key, "enum", description, choices=choices, default=default)


def text(name: str, key: int, max_len: int, description: str) -> Field:
    return Field(name, key, "str", description, max_len=max_len)


def struct_list(
    name: str, key: int, max_items: int, item: tuple[ItemField, ...], description: str
) -> Field:
    default: Any = ()
    return Field(name, key, "list", description, max_items=max_items, item=item, default=default)


def command_id(key: int = 0) -> Field:
    return uint("command_id", key, 0, 255, "", COMMAND_ID_DESCRIPTION)


def config_version(key: int, *, required: bool = False) -> Field:
    return uint(
        "config_version",
        key,
        0,
        65535,
        "",
        CONFIG_VERSION_DESCRIPTION,
        default=None if required else 0,
    )
