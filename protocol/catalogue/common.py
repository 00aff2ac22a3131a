"""Messages every citypack node speaks, whatever its kind.

Names follow TALQ 2.7.1 / uCIFI (OMA LwM2M registry objects 3410-3460) where they exist: the boot
report carries what LwM2M object 3 (Device) would (firmware version, hardware, reset reason), and
every command downlink carries a small ``command_id`` that ``command_result`` echoes, so the gateway
marks a command applied only when the node says so (ARCHITECTURE.md invariant 4).
"""

from __future__ import annotations

from protocol.catalogue._build import command_id, config_version, enum, text, uint
from protocol.catalogue.model import Message

PROTOCOL_VERSION = 2
"""Version of this catalogue, sent in ``device_info``; bump it when a message gains fields or a
form. 1: the first catalogue; 2: bin_status's compact form on fPort 12."""

RESET_REASONS = ("power_on", "deep_sleep", "watchdog", "brownout", "software", "other")

DEVICE_INFO = Message(
    name="device_info",
    fport=1,
    direction="up",
    device="common",
    periodic=False,
    description="Sent once after every boot (and on status_request): who the node is.",
    fields=(
        enum("kind", 0, ("bin", "lamp"), "Device type."),
        text("firmware_version", 1, 16, "Firmware version, e.g. '1.4.2'."),
        text("hardware", 2, 16, "Board and radio, e.g. 'esp32-sx1262'."),
        uint(
            "protocol_version",
            3,
            1,
            255,
            "",
            "Catalogue version the firmware was generated from (protocol.catalogue).",
        ),
        enum(
            "reset_reason",
            4,
            RESET_REASONS,
            "Why the node (re)started.",
            default="power_on",
        ),
        config_version(5),
    ),
    examples={
        "typical": {
            "kind": "bin",
            "firmware_version": "1.0.0",
            "hardware": "esp32-sx1276",
            "protocol_version": PROTOCOL_VERSION,
            "reset_reason": "deep_sleep",
            "config_version": 3,
        },
        "minimum": {
            "kind": "bin",
            "firmware_version": "0",
            "hardware": "x",
            "protocol_version": 1,
            "reset_reason": "power_on",
            "config_version": 0,
        },
        "maximum": {
            "kind": "lamp",
            "firmware_version": "255.255.255-rc99",
            "hardware": "esp32s3-sx1262v2",
            "protocol_version": 255,
            "reset_reason": "other",
            "config_version": 65535,
        },
    },
)

COMMAND_RESULT = Message(
    name="command_result",
    fport=2,
    direction="up",
    device="common",
    periodic=False,
    description="The node's answer to a command downlink: applied, rejected or unsupported.",
    fields=(
        uint("command_id", 0, 0, 255, "", "The command_id of the downlink this answers."),
        enum(
            "outcome",
            1,
            ("applied", "rejected", "unsupported"),
            "What the node did with the command.",
            default="applied",
        ),
        config_version(2),
    ),
    examples={
        "typical": {"command_id": 17, "outcome": "applied", "config_version": 4},
        "minimum": {"command_id": 0, "outcome": "applied", "config_version": 0},
        "maximum": {"command_id": 255, "outcome": "unsupported", "config_version": 65535},
        "rejected": {"command_id": 24, "outcome": "rejected", "config_version": 24},
    },
)

DEVICE_CONFIG = Message(
    name="device_config",
    fport=100,
    direction="down",
    device="common",
    periodic=False,
    description="Settings every node has: how often it reports.",
    fields=(
        command_id(),
        config_version(1, required=True),
        uint(
            "report_interval_s",
            2,
            60,
            86400,
            "s",
            "Seconds between periodic status uplinks.",
            default=3600,
        ),
    ),
    examples={
        "typical": {"command_id": 5, "config_version": 2, "report_interval_s": 900},
        "minimum": {"command_id": 0, "config_version": 0, "report_interval_s": 60},
        "maximum": {"command_id": 255, "config_version": 65535, "report_interval_s": 86400},
    },
)

TIME_SYNC = Message(
    name="time_sync",
    fport=101,
    direction="down",
    device="common",
    periodic=False,
    description="Wall-clock time for schedules (the MAC's DeviceTimeReq is the other source).",
    fields=(
        command_id(),
        uint("unix_time", 1, 0, 0xFFFF_FFFF, "s", "Seconds since 1970-01-01T00:00:00Z (UTC)."),
    ),
    examples={
        "typical": {"command_id": 9, "unix_time": 1_790_000_000},
        "minimum": {"command_id": 0, "unix_time": 0},
        "maximum": {"command_id": 255, "unix_time": 0xFFFF_FFFF},
    },
)

REBOOT = Message(
    name="reboot",
    fport=102,
    direction="down",
    device="common",
    periodic=False,
    description="Restart the node; it answers with command_result, then device_info after boot.",
    fields=(command_id(),),
    examples={
        "typical": {"command_id": 12},
        "minimum": {"command_id": 0},
        "maximum": {"command_id": 255},
    },
)

STATUS_REQUEST = Message(
    name="status_request",
    fport=103,
    direction="down",
    device="common",
    periodic=False,
    description="Ask for an immediate status uplink (and device_info) outside the schedule.",
    fields=(command_id(),),
    examples={
        "typical": {"command_id": 33},
        "minimum": {"command_id": 0},
        "maximum": {"command_id": 255},
    },
)

MESSAGES = (DEVICE_INFO, COMMAND_RESULT, DEVICE_CONFIG, TIME_SYNC, REBOOT, STATUS_REQUEST)
