"""Fixtures for the security tests: a gateway whose HTTP API is served in-process (ASGI)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from gateway.api import create_app
from gateway.config import parse_config
from gateway.service import Gateway

TOKEN = "sec-test-token-5f2a9c"
BIN = "a840410001810001"
LAMP = "a840410001820001"


def make_gateway(db: Path, *, token: str | None = TOKEN) -> Gateway:
    """Outside an event loop: opened and seeded with :func:`asyncio.run`."""
    gateway = new_gateway(db, token=token)
    asyncio.run(seed(gateway))
    return gateway


def new_gateway(db: Path, *, token: str | None = TOKEN) -> Gateway:
    config = parse_config(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:1", "application_id": "app"},
            "store": {"url": f"sqlite:///{db}"},
            "api": {"listen": "127.0.0.1:0"},
        },
        environ={},
    )
    return Gateway(config, api_token=token)


async def seed(gateway: Gateway) -> None:
    await gateway.open()
    gateway.upsert_device(BIN, {"kind": "bin", "name": "bin-1"})
    gateway.upsert_device(LAMP, {"kind": "lamp", "name": "lamp-1"})
    await gateway.flush()


@pytest.fixture
def gateway_app(tmp_path: Path) -> Iterator[tuple[Gateway, FastAPI]]:
    """A gateway with one bin and one lamp; no MQTT (the API is what is tested)."""
    gateway = make_gateway(tmp_path / "gw.db")
    try:
        yield gateway, create_app(gateway)
    finally:
        asyncio.run(gateway.close())
