"""What an app sees of the network and of the node: the narrow seam between apps and the MAC.

An app never touches the MAC, the radio or a byte of payload. It calls

    ok = await node.uplink(name, fields, confirmed=False)   # encoded by citypack_payloads
    name, fields = node.next_command()                      # decoded downlinks, or None

and the node turns every command into a ``command_result`` (``node.result(...)``). Under it sits
a *link* with four methods, so the same app runs on the real MAC (``apps.maclink.MacLink``), on
the fleet simulator's network, or on a test's fake network:

    await link.join() -> bool
    await link.send(fport, data, confirmed) -> (ok: bool, downlinks: [(fport, bytes), ...])
    link.set_receiver(callback)        # class C: callback(fport, data) for every downlink
    await link.device_time() -> int | None   # unix seconds (DeviceTimeReq) when the MAC has it

Every payload goes through the generated codec (docs/interfaces.md, "Application payloads").
Nothing from the air raises out of here: undecodable downlinks are counted and dropped.
"""

import json

import citypack_payloads as cp
from hal.pins import Reboot  # noqa: F401  (re-exported for apps)

FIRMWARE_VERSION = "0.1.0"
_PROTOCOL_VERSION = getattr(cp, "PROTOCOL_VERSION", 1)


class Node:
    def __init__(self, link, clock, kind, hardware="esp32", log=None, version=None):
        self.link = link
        self.version = version or FIRMWARE_VERSION  # the running set's (fwslot) after an update
        self.port_handler = None  # (fport, payload) -> True when taken (fuota.agent, ports 200-202)
        self.clock = clock
        self.kind = kind
        self.hardware = hardware[:16]
        self.log = log
        self.joined = False
        self.commands = []
        self.uplinks_sent = 0
        self.uplinks_failed = 0
        self.bad_downlinks = 0
        self.encode_errors = 0
        self.wake = clock.alarm()  # fired when a class C command arrives
        link.set_receiver(self._on_downlink)

    def _say(self, *parts):
        if self.log is not None:
            self.log(*parts)

    async def join(self, attempts=1):
        """Join (OTAA) with up to ``attempts`` tries, backing off 1, 2, 4 … min between them."""
        backoff_s = 60
        for i in range(attempts):
            try:
                if await self.link.join():
                    self.joined = True
                    return True
            except Exception as exc:  # a broken radio must not stop the app
                self._say("join error", exc)
            if i + 1 < attempts:
                await self.clock.sleep_ms(backoff_s * 1000)
                backoff_s = min(backoff_s * 2, 3600)
        return False

    async def uplink(self, name, fields, confirmed=False):
        """Encode and send; downlinks that come back are queued as commands. False on failure."""
        try:
            data = cp.encode(name, fields)
        except ValueError as exc:  # cp.PayloadError: an app bug, which must not stop the node
            self._say("cannot encode", name, exc)
            self.encode_errors += 1
            return False
        try:
            ok, downlinks = await self.link.send(cp.FPORT[name], data, confirmed)
        except Exception as exc:  # no network: the app keeps running
            self._say("uplink", name, "failed:", exc)
            self.uplinks_failed += 1
            return False
        for fport, payload in downlinks:
            self._on_downlink(fport, payload)
        if ok:
            self.uplinks_sent += 1
        else:
            self.uplinks_failed += 1
        return ok

    def _on_downlink(self, fport, payload):
        h = self.port_handler
        if h is not None and h(fport, payload):
            return
        try:
            name, fields = cp.decode(fport, bytes(payload))
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # cp.PayloadError is one
            self.bad_downlinks += 1
            self._say("bad downlink on fport", fport, exc)
            return
        self.commands.append((name, fields))
        self.wake.fire()

    def next_command(self):
        return self.commands.pop(0) if self.commands else None

    async def device_info(self, reset_reason, config_version):
        return await self.uplink(
            "device_info",
            {
                "kind": self.kind,
                "firmware_version": self.version,
                "hardware": self.hardware,
                "protocol_version": _PROTOCOL_VERSION,
                "reset_reason": reset_reason,
                "config_version": config_version,
            },
        )

    async def result(self, command_id, outcome, config_version):
        return await self.uplink(
            "command_result",
            {"command_id": command_id, "outcome": outcome, "config_version": config_version},
        )

    async def device_time(self):
        try:
            return await self.link.device_time()
        except Exception:
            return None


class Settings:
    """A dict of settings persisted as one JSON blob in a HAL store (``load``/``save``)."""

    def __init__(self, store, key, defaults):
        self._store = store
        self._key = key
        self.values = dict(defaults)
        blob = store.load(key) if store is not None else None
        if blob:
            try:
                saved = json.loads(bytes(blob).decode())
            except (ValueError, UnicodeError):
                saved = None  # torn or foreign blob: start from the defaults
            if isinstance(saved, dict):
                for k in saved:
                    self.values[k] = saved[k]

    def __getitem__(self, key):
        return self.values[key]

    def __setitem__(self, key, value):
        self.values[key] = value

    def get(self, key, default=None):
        return self.values.get(key, default)

    def save(self):
        if self._store is not None:
            self._store.save(self._key, json.dumps(self.values).encode())


def setting(app_cfg, key, default):
    """An app setting from ``config.json["app"]`` with its default."""
    if app_cfg is None:
        return default
    value = app_cfg.get(key)
    return default if value is None else value
