"""An in-process ChirpStack v4 gRPC API for the registration tests.

Real gRPC on 127.0.0.1 (a free port), with the servicer base classes generated in ``chirpstack-api``
(``api.DeviceServiceServicer``, ``api.DeviceProfileServiceServicer``). It behaves like ChirpStack
where the provisioning tool depends on it (ChirpStack api/proto/api/device.proto,
device_profile.proto): bearer-token metadata or UNAUTHENTICATED, ALREADY_EXISTS on a duplicate
``Create``/``CreateKeys``, NOT_FOUND on unknown ids, INVALID_ARGUMENT on a malformed EUI or key,
profiles listed by name search within a tenant. It counts the calls that write, so a test can prove
a re-run wrote nothing.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from chirpstack_api import api
from google.protobuf import empty_pb2

_EUI = re.compile(r"^[0-9a-f]{16}$")
_KEY = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class State:
    token: str
    profiles: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, Any] = field(default_factory=dict)
    writes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # fail (UNAVAILABLE) every device Create after this many succeeded: a server going away
    fail_device_creates_after: int | None = None
    # per-DevEUI INVALID_ARGUMENT, as ChirpStack does for a rejected device
    reject: set[str] = field(default_factory=set)


def _auth(state: State, context: Any) -> None:
    metadata = dict(context.invocation_metadata())
    if metadata.get("authorization") != f"Bearer {state.token}":
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failed: invalid token")


def _copy(message: Any) -> Any:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


class DeviceProfiles(api.DeviceProfileServiceServicer):  # type: ignore[misc]
    def __init__(self, state: State) -> None:
        self.state = state

    def Create(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            profile = _copy(request.device_profile)
            if not profile.tenant_id or not profile.name:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tenant_id and name required")
            profile.id = str(uuid.uuid4())
            self.state.profiles[profile.id] = profile
            self.state.writes["profile.create"] += 1
            return api.CreateDeviceProfileResponse(id=profile.id)

    def Get(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            if request.id not in self.state.profiles:
                context.abort(grpc.StatusCode.NOT_FOUND, "object does not exist")
            return api.GetDeviceProfileResponse(
                device_profile=_copy(self.state.profiles[request.id])
            )

    def Update(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            if request.device_profile.id not in self.state.profiles:
                context.abort(grpc.StatusCode.NOT_FOUND, "object does not exist")
            self.state.profiles[request.device_profile.id] = _copy(request.device_profile)
            self.state.writes["profile.update"] += 1
            return empty_pb2.Empty()

    def List(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            found = [
                p
                for p in self.state.profiles.values()
                if p.tenant_id == request.tenant_id and request.search.lower() in p.name.lower()
            ]
            items = [
                api.DeviceProfileListItem(id=p.id, name=p.name, region=p.region)
                for p in found[request.offset : request.offset + request.limit]
            ]
            return api.ListDeviceProfilesResponse(total_count=len(found), result=items)


class Devices(api.DeviceServiceServicer):  # type: ignore[misc]
    def __init__(self, state: State) -> None:
        self.state = state

    def Create(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        device = _copy(request.device)
        with self.state.lock:
            limit = self.state.fail_device_creates_after
            if limit is not None and self.state.writes["device.create"] >= limit:
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
            if not _EUI.match(device.dev_eui):
                context.abort(grpc.StatusCode.INTERNAL, "lrwn: invalid EUI")
            if device.dev_eui in self.state.reject:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "validation error")
            if device.device_profile_id not in self.state.profiles:
                context.abort(grpc.StatusCode.NOT_FOUND, "device profile does not exist")
            if device.dev_eui in self.state.devices:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "object already exists")
            self.state.devices[device.dev_eui] = device
            self.state.writes["device.create"] += 1
            return empty_pb2.Empty()

    def Get(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            if request.dev_eui not in self.state.devices:
                context.abort(grpc.StatusCode.NOT_FOUND, "object does not exist")
            return api.GetDeviceResponse(device=_copy(self.state.devices[request.dev_eui]))

    def Update(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            if request.device.dev_eui not in self.state.devices:
                context.abort(grpc.StatusCode.NOT_FOUND, "object does not exist")
            self.state.devices[request.device.dev_eui] = _copy(request.device)
            self.state.writes["device.update"] += 1
            return empty_pb2.Empty()

    def CreateKeys(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        keys = _copy(request.device_keys)
        with self.state.lock:
            if keys.dev_eui not in self.state.devices:
                context.abort(grpc.StatusCode.NOT_FOUND, "device does not exist")
            if not _KEY.match(keys.nwk_key):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "nwk_key: expected 32 hex")
            if keys.dev_eui in self.state.keys:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "object already exists")
            self.state.keys[keys.dev_eui] = keys
            self.state.writes["keys.create"] += 1
            return empty_pb2.Empty()

    def GetKeys(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            if request.dev_eui not in self.state.keys:
                context.abort(grpc.StatusCode.NOT_FOUND, "object does not exist")
            return api.GetDeviceKeysResponse(device_keys=_copy(self.state.keys[request.dev_eui]))

    def UpdateKeys(self, request: Any, context: Any) -> Any:
        _auth(self.state, context)
        with self.state.lock:
            if request.device_keys.dev_eui not in self.state.keys:
                context.abort(grpc.StatusCode.NOT_FOUND, "object does not exist")
            self.state.keys[request.device_keys.dev_eui] = _copy(request.device_keys)
            self.state.writes["keys.update"] += 1
            return empty_pb2.Empty()


class FakeChirpStack:
    """Start with ``with FakeChirpStack(token) as cs:``; ``cs.target`` is ``127.0.0.1:PORT``."""

    def __init__(self, token: str) -> None:
        self.state = State(token=token)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api.add_DeviceServiceServicer_to_server(Devices(self.state), self.server)
        api.add_DeviceProfileServiceServicer_to_server(DeviceProfiles(self.state), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeChirpStack:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None).wait(5)
