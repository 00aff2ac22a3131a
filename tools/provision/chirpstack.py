"""Register device profiles, devices and keys in ChirpStack v4 over gRPC.

ChirpStack api/proto/api: ``DeviceProfileService`` and ``DeviceService`` from the
``chirpstack-api`` stubs, authorisation as per-call metadata
``("authorization", "Bearer <API token>")``; errors as gRPC
status codes (ALREADY_EXISTS for a duplicate, NOT_FOUND, UNAUTHENTICATED for a bad token,
UNAVAILABLE when nothing answers). For LoRaWAN 1.0.x the node's AppKey goes into
``DeviceKeys.nwk_key`` and ``app_key`` stays empty (ChirpStack checks the join MIC and derives the
session keys from ``nwk_key``).

Idempotent: ``Create`` that answers ALREADY_EXISTS is followed by ``Get``; when what ChirpStack
holds differs from the inventory the record is updated (keeping the fields we do not manage),
otherwise it is left alone. A device profile is found by its name in the tenant. Running a batch
twice changes nothing the second time, and a batch that failed halfway is finished by running it
again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from chirpstack_api import api, common

from tools.provision.errors import RegistrationError
from tools.provision.exports import device_tags
from tools.provision.inventory import Node

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
_REGIONS = {"EU868": common.Region.EU868, "US915": common.Region.US915}
# LoRaWAN L2 1.0.4 goes with RP002-1.0.3 (the regional parameters it was published with).
MAC_VERSION = common.MacVersion.LORAWAN_1_0_4
REG_PARAMS_REVISION = common.RegParamsRevision.RP002_1_0_3
# Expected uplink intervals (s): ChirpStack marks a device inactive after missing some of these.
UPLINK_INTERVAL_S = {"bin": 3600, "lamp": 900}
CLASS_C_TIMEOUT_S = 5  # seconds a class-C confirmed downlink waits for its ack (lamps)
DEFAULT_CODEC = (
    Path(__file__).resolve().parents[2] / "protocol" / "generated" / "chirpstack_codec.js"
)
_CLASS = {"bin": "A", "lamp": "C"}
_HEX32 = re.compile(r"\b[0-9a-fA-F]{32}\b")


def profile_name(kind: str, region: str) -> str:
    return f"citypack-{kind}-{region.lower()}"


def read_codec(path: Path | None = None) -> str:
    """The generated ChirpStack codec (``decodeUplink``/``encodeDownlink``, chirpstack.md §6)."""
    path = path or DEFAULT_CODEC
    try:
        script = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistrationError(
            f"the ChirpStack codec {path} is missing ({exc.strerror}); run `citypack codegen` first"
        ) from exc
    if "function decodeUplink" not in script:
        raise RegistrationError(f"{path} has no decodeUplink(): not a ChirpStack v4 codec")
    return script


def desired_profile(tenant_id: str, kind: str, region: str, codec_script: str) -> Any:
    """The device profile citypack wants for one kind of node in one region."""
    return api.DeviceProfile(
        tenant_id=tenant_id,
        name=profile_name(kind, region),
        description=f"citypack {kind} node, LoRaWAN 1.0.4 OTAA, class {_CLASS[kind]}",
        region=_REGIONS[region],
        region_config_id=region.lower(),
        mac_version=MAC_VERSION,
        reg_params_revision=REG_PARAMS_REVISION,
        adr_algorithm_id="default",
        supports_otaa=True,
        supports_class_b=False,
        supports_class_c=kind == "lamp",
        class_c_timeout=CLASS_C_TIMEOUT_S if kind == "lamp" else 0,
        payload_codec_runtime=api.CodecRuntime.JS,
        payload_codec_script=codec_script,
        flush_queue_on_activate=True,
        uplink_interval=UPLINK_INTERVAL_S[kind],
        device_status_req_interval=1,
        tags={"citypack_kind": kind},
    )


def _merged(current: Any, desired: Any) -> Any:
    """``current`` with every field ``desired`` sets (maps replaced whole); other fields kept."""
    merged = type(current)()
    merged.CopyFrom(current)
    for descriptor, value in desired.ListFields():
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            target = getattr(merged, descriptor.name)
            target.clear()
            target.update(value)
        else:
            setattr(merged, descriptor.name, value)
    return merged


def _redact(text: str) -> str:
    return _HEX32.sub("<redacted>", text)


@dataclass
class ChirpStack:
    """A small synchronous client for the provisioning RPCs; errors become one-line messages."""

    target: str
    token: str
    timeout_s: float = 15.0

    def __post_init__(self) -> None:
        self._channel = grpc.insecure_channel(self.target)
        self._metadata = (("authorization", f"Bearer {self.token}"),)
        self.devices = api.DeviceServiceStub(self._channel)
        self.profiles = api.DeviceProfileServiceStub(self._channel)

    def __repr__(self) -> str:  # never the token
        return f"ChirpStack({self.target!r})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ChirpStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable[..., Any], request: Any, *, what: str) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise self._error(exc, what) from None

    def _error(self, exc: Any, what: str) -> Exception:
        code = exc.code() if hasattr(exc, "code") else None
        details = _redact(str(exc.details() if hasattr(exc, "details") else exc) or "")
        name = code.name if code is not None else "UNKNOWN"
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return RegistrationError(
                f"ChirpStack at {self.target} refused the API token (UNAUTHENTICATED): "
                "check --api-token-file"
            )
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return RegistrationError(
                f"ChirpStack at {self.target}: the API token may not {what} (PERMISSION_DENIED)"
            )
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return RegistrationError(
                f"cannot reach ChirpStack at {self.target} ({name}); check --chirpstack HOST:PORT"
            )
        return RpcFailure(
            code, f"ChirpStack {what}: {name}: {details.splitlines()[0] if details else ''}"
        )

    # --- device profiles ------------------------------------------------------------------------

    def ensure_profile(self, tenant_id: str, kind: str, region: str, codec: str) -> tuple[str, str]:
        """The id of citypack's profile for (kind, region), created or brought up to date."""
        desired = desired_profile(tenant_id, kind, region, codec)
        listing = self.call(
            self.profiles.List,
            api.ListDeviceProfilesRequest(limit=100, search=desired.name, tenant_id=tenant_id),
            what=f"list device profiles of tenant {tenant_id}",
        )
        matches = [item for item in listing.result if item.name == desired.name]
        if len(matches) > 1:
            raise RegistrationError(
                f"tenant {tenant_id} has {len(matches)} device profiles named {desired.name}; "
                "delete the extra ones"
            )
        if not matches:
            created = self.call(
                self.profiles.Create,
                api.CreateDeviceProfileRequest(device_profile=desired),
                what=f"create device profile {desired.name}",
            )
            return str(created.id), CREATED
        profile_id = str(matches[0].id)
        current = self.call(
            self.profiles.Get,
            api.GetDeviceProfileRequest(id=profile_id),
            what=f"get device profile {desired.name}",
        ).device_profile
        desired.id = profile_id
        merged = _merged(current, desired)
        if merged == current:
            return profile_id, UNCHANGED
        self.call(
            self.profiles.Update,
            api.UpdateDeviceProfileRequest(device_profile=merged),
            what=f"update device profile {desired.name}",
        )
        return profile_id, UPDATED

    # --- devices and keys -----------------------------------------------------------------------

    def ensure_device(self, node: Node, application_id: str, profile_id: str) -> str:
        desired = api.Device(
            dev_eui=node.dev_eui,
            name=node.name,
            description=f"citypack {node.kind} {node.serial}".strip(),
            application_id=application_id,
            device_profile_id=profile_id,
            join_eui=node.join_eui,
            tags=device_tags(node),
        )
        try:
            self.call(
                self.devices.Create,
                api.CreateDeviceRequest(device=desired),
                what=f"create device {node.dev_eui}",
            )
            return CREATED
        except RpcFailure as failure:
            if failure.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        current = self.call(
            self.devices.Get,
            api.GetDeviceRequest(dev_eui=node.dev_eui),
            what=f"get device {node.dev_eui}",
        ).device
        if current.application_id and current.application_id != application_id:
            raise RpcFailure(
                None,
                f"device {node.dev_eui} already belongs to application {current.application_id}, "
                f"not {application_id}; move or delete it in ChirpStack first",
            )
        merged = _merged(current, desired)
        if merged == current:
            return UNCHANGED
        self.call(
            self.devices.Update,
            api.UpdateDeviceRequest(device=merged),
            what=f"update device {node.dev_eui}",
        )
        return UPDATED

    def ensure_keys(self, dev_eui: str, app_key: bytes) -> str:
        desired = api.DeviceKeys(dev_eui=dev_eui, nwk_key=app_key.hex(), app_key="")
        try:
            self.call(
                self.devices.CreateKeys,
                api.CreateDeviceKeysRequest(device_keys=desired),
                what=f"create keys of {dev_eui}",
            )
            return CREATED
        except RpcFailure as failure:
            if failure.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        current = self.call(
            self.devices.GetKeys,
            api.GetDeviceKeysRequest(dev_eui=dev_eui),
            what=f"get keys of {dev_eui}",
        ).device_keys
        if current.nwk_key.lower() == desired.nwk_key and not current.app_key.strip("0"):
            return UNCHANGED
        merged = _merged(current, desired)
        merged.app_key = ""
        self.call(
            self.devices.UpdateKeys,
            api.UpdateDeviceKeysRequest(device_keys=merged),
            what=f"update keys of {dev_eui}",
        )
        return UPDATED


class RpcFailure(RegistrationError):
    """A per-device gRPC failure (the batch goes on with the next node); ``code`` is its status."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
