"""tools/sim/broker.py ReservedPort: the port a rig names in the gateway's config before the
emulator's gRPC server binds it is kept from everyone else, and the server still gets it."""

from __future__ import annotations

import socket

import grpc
import pytest

from tools.netsim.config import NetsimConfig
from tools.netsim.grpcapi import start_grpc
from tools.netsim.server import NetworkServer
from tools.sim.broker import ReservedPort


def test_a_reserved_port_is_refused_to_a_plain_bind() -> None:
    reserved = ReservedPort()
    try:
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", reserved.port))
    finally:
        reserved.close()
    with socket.socket() as other:  # released: the port is free again
        other.bind(("127.0.0.1", reserved.port))


async def test_the_emulator_binds_the_reserved_port_and_answers_on_it() -> None:
    reserved = ReservedPort()
    ns = NetworkServer([], NetsimConfig(application_id="app"))
    try:
        async with ns:
            server, port = await start_grpc(ns, "127.0.0.1", reserved.port, "token")
            try:
                assert port == reserved.port
                reserved.close()  # connections go to the listening server, never to the holder
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    await channel.channel_ready()
            finally:
                await server.stop(None)
    finally:
        reserved.close()
