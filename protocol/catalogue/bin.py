"""Messages of the waste-bin node (fill-level sensor under the lid).

Vocabulary from TALQ 2.7.1 ``FillingLevelSensorFunction`` / ``WasteContainerFunction`` and uCIFI
object 3435 Filling level (OMA LwM2M registry): filling percentage, temperature
alarm (fire), out of position (tilt), filling operations counter (pickups), battery level.

Size budget (issue 2, "Numbers"): ``bin_status`` is at most 11 bytes at typical values so it fits
US915 DR0 (11 bytes, RP002-1.0.4 §5.2.6: N = M - 8 = 19 - 8) and every EU868 DR with room for
FOpts. It gets there by one-byte keys, omitted defaults (flags word, pickups), and a 5 % battery
step so the battery level always fits the one-byte CBOR form.

Worst case (issue 17): every flag set, 255 pickups and config version 65535 take 18 bytes in the
v1 map form, which no catalogue rule can shrink. Its compact form on fPort 12 (protocol version
2; a new fPort, as the breaking-change rule in protocol/catalogue/__init__.py says) drops the keys
and takes up to 23 pickups per report: 11 bytes at worst, 8 typical. Nodes send the compact form
(the bin app clamps pickups per report to 23; every pickup is also a ``bin_alarm``) and the map
form on fPort 10 only for values beyond the compact limits; decoders read both as ``bin_status``.
"""

from __future__ import annotations

from protocol.catalogue._build import command_id, config_version, enum, flag, sint, uint
from protocol.catalogue.model import Message

BIN_STATUS = Message(
    name="bin_status",
    fport=10,
    direction="up",
    device="bin",
    periodic=True,
    description="Periodic bin report (every report_interval_s, default hourly).",
    compact_fport=12,
    compact_limits=(("pickup_count", 0, 23),),
    fields=(
        uint("fill_percent", 0, 0, 100, "%", "How full the container is (fillingPercentage)."),
        sint("temperature_c", 1, -40, 125, "°C", "Temperature inside the container."),
        uint(
            "battery_percent",
            2,
            0,
            100,
            "%",
            "Battery level (batteryLevel), in 5 % steps: a primary cell's curve gives no better.",
            scale=5,
        ),
        flag("tilt", 3, 0, "The container is out of position (uCIFI outOfPosition)."),
        flag("fire", 3, 1, "Temperature is above fire_threshold_c (uCIFI temperature alarm)."),
        flag("sensor_fault", 3, 2, "The level sensor gave no valid reading."),
        uint(
            "pickup_count",
            4,
            0,
            255,
            "",
            "Pickups (emptyings) detected since the previous bin_status; each one also sends "
            "a bin_alarm 'pickup' at once.",
            default=0,
        ),
        config_version(5),
    ),
    examples={
        "typical": {
            "fill_percent": 42,
            "temperature_c": 18,
            "battery_percent": 85,
            "tilt": False,
            "fire": False,
            "sensor_fault": False,
            "pickup_count": 0,
            "config_version": 3,
        },
        "minimum": {
            "fill_percent": 0,
            "temperature_c": -40,
            "battery_percent": 0,
            "tilt": False,
            "fire": False,
            "sensor_fault": False,
            "pickup_count": 0,
            "config_version": 0,
        },
        "maximum": {
            "fill_percent": 100,
            "temperature_c": 125,
            "battery_percent": 100,
            "tilt": True,
            "fire": True,
            "sensor_fault": True,
            "pickup_count": 255,
            "config_version": 65535,
        },
        "after_pickup": {
            "fill_percent": 3,
            "temperature_c": 11,
            "battery_percent": 70,
            "tilt": False,
            "fire": False,
            "sensor_fault": False,
            "pickup_count": 1,
            "config_version": 3,
        },
    },
)

BIN_ALARM = Message(
    name="bin_alarm",
    fport=11,
    direction="up",
    device="bin",
    periodic=False,
    description="Sent at once when something happens to the bin, between periodic reports.",
    fields=(
        enum("alarm", 0, ("fire", "tilt", "pickup", "sensor_fault"), "What happened."),
        sint(
            "value",
            1,
            -40,
            180,
            "",
            "The triggering reading: °C for fire, degrees from upright for tilt, fill drop in % "
            "for pickup, 0 for sensor_fault.",
            default=0,
        ),
        uint("fill_percent", 2, 0, 100, "%", "Fill level after the event.", default=0),
    ),
    examples={
        "typical": {"alarm": "fire", "value": 72, "fill_percent": 55},
        "minimum": {"alarm": "fire", "value": -40, "fill_percent": 0},
        "maximum": {"alarm": "sensor_fault", "value": 180, "fill_percent": 100},
        "pickup": {"alarm": "pickup", "value": 81, "fill_percent": 2},
        "tilt": {"alarm": "tilt", "value": 90, "fill_percent": 37},
    },
)

BIN_CONFIG = Message(
    name="bin_config",
    fport=110,
    direction="down",
    device="bin",
    periodic=False,
    description="Bin node settings (uCIFI 3435 container height, high threshold).",
    fields=(
        command_id(),
        config_version(1, required=True),
        uint(
            "container_height_cm",
            2,
            20,
            400,
            "cm",
            "Inside height of the container (containerHeight); fill = 1 - level/height.",
            default=100,
        ),
        uint(
            "sensor_offset_cm",
            3,
            0,
            100,
            "cm",
            "Distance from the sensor to the brim (the sensor's blind zone and mounting).",
            default=0,
        ),
        uint(
            "full_threshold_percent",
            4,
            10,
            100,
            "%",
            "Fill level that counts as full (levelHighThreshold).",
            default=80,
        ),
        uint(
            "fire_threshold_c",
            5,
            40,
            125,
            "°C",
            "Temperature that raises a fire alarm.",
            default=70,
        ),
        uint(
            "report_interval_s",
            6,
            300,
            86400,
            "s",
            "Seconds between bin_status uplinks.",
            default=3600,
        ),
        uint(
            "fill_step_percent",
            7,
            1,
            50,
            "%",
            "Send an extra bin_status when the fill level moved this much since the last one.",
            default=10,
        ),
    ),
    examples={
        "typical": {
            "command_id": 7,
            "config_version": 4,
            "container_height_cm": 120,
            "sensor_offset_cm": 5,
            "full_threshold_percent": 80,
            "fire_threshold_c": 70,
            "report_interval_s": 7200,
            "fill_step_percent": 10,
        },
        "minimum": {
            "command_id": 0,
            "config_version": 0,
            "container_height_cm": 20,
            "sensor_offset_cm": 0,
            "full_threshold_percent": 10,
            "fire_threshold_c": 40,
            "report_interval_s": 300,
            "fill_step_percent": 1,
        },
        "maximum": {
            "command_id": 255,
            "config_version": 65535,
            "container_height_cm": 400,
            "sensor_offset_cm": 100,
            "full_threshold_percent": 100,
            "fire_threshold_c": 125,
            "report_interval_s": 86400,
            "fill_step_percent": 50,
        },
    },
)

MESSAGES = (BIN_STATUS, BIN_ALARM, BIN_CONFIG)
