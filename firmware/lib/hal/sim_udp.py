"""The node end of the UDP sim link: a MicroPython process talking to a CPython test network.

The datagrams are documented in :mod:`hal.sim_radio`; use it as the ``link`` of a
:class:`hal.sim_radio.SimRadio`. The exchange is synchronous (blocking socket with a timeout):
every datagram gets exactly one reply, which keeps virtual time from running ahead of the
network process.
"""

import json
import socket
from binascii import hexlify, unhexlify


class UdpLink:
    """The node end of the UDP sim link (protocol in the module docstring)."""

    def __init__(self, host, port, timeout_s=5.0, poll_ms=1000):
        self._addr = socket.getaddrinfo(host, port)[0][-1]
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.settimeout(timeout_s)
        self.poll_ms = poll_ms
        self._radios = {}

    def attach(self, node_id, radio):
        self._radios[node_id] = radio

    def _exchange(self, node_id, msg):
        self._sock.sendto(json.dumps(msg).encode(), self._addr)
        data = self._sock.recv(4096)  # blocking on purpose: the network answers every datagram
        reply = json.loads(data)
        radio = self._radios.get(node_id)
        for item in reply.get("items", ()):
            if radio is not None:
                radio.deliver(
                    unhexlify(item["phy"]), item["freq_hz"], item["datr"], item["t_ms"],
                    item.get("rssi", -60), item.get("snr", 8),
                )  # fmt: skip

    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        msg = {"type": "uplink", "node_id": node_id, "phy": hexlify(phy).decode(),
               "freq_hz": freq_hz, "datr": datr, "t_ms": t_ms}  # fmt: skip
        self._exchange(node_id, msg)

    def poll(self, node_id, t_ms):
        self._exchange(node_id, {"type": "poll", "node_id": node_id, "t_ms": t_ms})

    def close(self):
        self._sock.close()
