"""Messages of the street-lamp node (lamp controller with dimmer, meter and presence sensor).

Vocabulary from TALQ 2.7.1 ``LampActuatorFunction`` / ``LampMonitorFunction`` /
``TrafficCounterFunction`` and uCIFI objects 3416 (Outdoor lamp controller) and 3418 (Electrical
monitor), OMA LwM2M registry: dimming level, active power, active energy,
operating hours, switch-on counter, lamp/dimming/relay failure, supply loss, day burner, road users.

The ever-growing counters (energy, hours, switch-ons) change slowly and need 3-5 bytes each, so
they travel in ``lamp_counters``, sent every few status periods, keeping ``lamp_status`` small.
A ``lamp_profile`` with its largest values still fits the 51-byte EU868 DR0 downlink
(RP002-1.0.4 §2.4.6), which is why it has at most four steps.
"""

from __future__ import annotations

from protocol.catalogue._build import (
    command_id,
    config_version,
    enum,
    flag,
    struct_list,
    uint,
)
from protocol.catalogue.model import ItemField, Message

LAMP_MODES = ("schedule", "override", "presence_boost", "off")

LAMP_STATUS = Message(
    name="lamp_status",
    fport=20,
    direction="up",
    device="lamp",
    periodic=True,
    description="Periodic lamp report (every report_interval_s, default hourly).",
    fields=(
        uint("dim_level", 0, 0, 100, "%", "Actual dimming level (actualLightState)."),
        uint("active_power_w", 1, 0, 2000, "W", "Active power drawn (activePower)."),
        enum(
            "mode",
            2,
            LAMP_MODES,
            "What sets the level now: the profile, an override, a presence boost, or off.",
            default="schedule",
        ),
        flag("lamp_failure", 3, 0, "The light source failed (lampFailure)."),
        flag("dimming_failure", 3, 1, "The driver does not follow the dim level (dimmingFailure)."),
        flag("relay_failure", 3, 2, "The relay does not switch (relayFailure)."),
        flag("supply_loss", 3, 3, "Mains supply was lost since the last report (supplyLoss)."),
        flag("day_burner", 3, 4, "The lamp burns in daylight (uCIFI 3416 day burner)."),
        uint(
            "road_users",
            4,
            0,
            65535,
            "",
            "Road users counted since the previous lamp_status (roadUserNumber).",
            default=0,
        ),
        config_version(5),
    ),
    examples={
        "typical": {
            "dim_level": 70,
            "active_power_w": 42,
            "mode": "schedule",
            "lamp_failure": False,
            "dimming_failure": False,
            "relay_failure": False,
            "supply_loss": False,
            "day_burner": False,
            "road_users": 37,
            "config_version": 3,
        },
        "minimum": {
            "dim_level": 0,
            "active_power_w": 0,
            "mode": "schedule",
            "lamp_failure": False,
            "dimming_failure": False,
            "relay_failure": False,
            "supply_loss": False,
            "day_burner": False,
            "road_users": 0,
            "config_version": 0,
        },
        "maximum": {
            "dim_level": 100,
            "active_power_w": 2000,
            "mode": "off",
            "lamp_failure": True,
            "dimming_failure": True,
            "relay_failure": True,
            "supply_loss": True,
            "day_burner": True,
            "road_users": 65535,
            "config_version": 65535,
        },
        "boosted_day_burner": {
            "dim_level": 100,
            "active_power_w": 61,
            "mode": "presence_boost",
            "lamp_failure": False,
            "dimming_failure": False,
            "relay_failure": False,
            "supply_loss": False,
            "day_burner": True,
            "road_users": 4,
            "config_version": 3,
        },
    },
)

LAMP_COUNTERS = Message(
    name="lamp_counters",
    fport=21,
    direction="up",
    device="lamp",
    periodic=True,
    description="The lamp's lifetime counters, sent less often than lamp_status (e.g. daily).",
    fields=(
        uint(
            "active_energy_wh",
            0,
            0,
            0xFFFF_FFFF,
            "Wh",
            "Energy used since installation (activeEnergy).",
        ),
        uint(
            "operating_hours",
            1,
            0,
            1_000_000,
            "h",
            "Hours the light source has burned (operatingHours).",
        ),
        uint(
            "switch_on_count",
            2,
            0,
            0xFFFF_FFFF,
            "",
            "Times the lamp was switched on (switchOnCounter).",
        ),
    ),
    examples={
        "typical": {"active_energy_wh": 152_340, "operating_hours": 8_400, "switch_on_count": 730},
        "minimum": {"active_energy_wh": 0, "operating_hours": 0, "switch_on_count": 0},
        "maximum": {
            "active_energy_wh": 0xFFFF_FFFF,
            "operating_hours": 1_000_000,
            "switch_on_count": 0xFFFF_FFFF,
        },
    },
)

LAMP_PRESENCE = Message(
    name="lamp_presence",
    fport=22,
    direction="up",
    device="lamp",
    periodic=False,
    description="Presence detected: the gateway lights the lamps ahead (the lamp's neighbours).",
    fields=(
        uint(
            "road_users",
            0,
            0,
            65535,
            "",
            "Road users counted since the previous lamp_presence (roadUserNumber).",
        ),
        uint("dim_level", 1, 0, 100, "%", "The lamp's level after reacting to the presence."),
    ),
    examples={
        "typical": {"road_users": 1, "dim_level": 100},
        "minimum": {"road_users": 0, "dim_level": 0},
        "maximum": {"road_users": 65535, "dim_level": 100},
    },
)

LAMP_OVERRIDE = Message(
    name="lamp_override",
    fport=120,
    direction="down",
    device="lamp",
    periodic=False,
    description="Set the level now, ahead of the profile (TALQ OverrideCommand).",
    fields=(
        command_id(),
        uint("dim_level", 1, 0, 100, "%", "Level to set (targetLightCommand)."),
        uint(
            "duration_s",
            2,
            0,
            86400,
            "s",
            "How long the override holds; 0 = until the next override or resume.",
            default=0,
        ),
        uint("fade_s", 3, 0, 255, "s", "Fade time to the new level.", default=0),
        flag(
            "resume_schedule",
            4,
            0,
            "End any override and return to the profile now (dim_level is then ignored).",
        ),
    ),
    examples={
        "typical": {
            "command_id": 21,
            "dim_level": 100,
            "duration_s": 900,
            "fade_s": 2,
            "resume_schedule": False,
        },
        "minimum": {
            "command_id": 0,
            "dim_level": 0,
            "duration_s": 0,
            "fade_s": 0,
            "resume_schedule": False,
        },
        "maximum": {
            "command_id": 255,
            "dim_level": 100,
            "duration_s": 86400,
            "fade_s": 255,
            "resume_schedule": True,
        },
    },
)

PROFILE_STEP = (
    ItemField(
        "anchor",
        "enum",
        "What the offset counts from: sunset, sunrise, or local midnight ('clock').",
        choices=("sunset", "sunrise", "clock"),
    ),
    ItemField(
        "offset_min",
        "int",
        "Minutes after the anchor (negative = before); for 'clock', minutes after midnight.",
        unit="min",
        minimum=-720,
        maximum=1439,
    ),
    ItemField("dim_level", "uint", "Level from this step on.", unit="%", minimum=0, maximum=100),
)

LAMP_PROFILE = Message(
    name="lamp_profile",
    fport=121,
    direction="down",
    device="lamp",
    periodic=False,
    description=(
        "The lamp's night program (TALQ ControlProgram with AstroClockTimeControl and "
        "DynamicControl): base_level until the first step, then each step's level from its time "
        "on; presence raises the level to boost_level for hold_time_s."
    ),
    fields=(
        command_id(),
        config_version(1, required=True),
        uint("base_level", 2, 0, 100, "%", "Level before the first step (defaultLightState)."),
        uint("boost_level", 3, 0, 100, "%", "Level while road users are present."),
        uint(
            "hold_time_s",
            4,
            0,
            3600,
            "s",
            "How long the boost holds after the last presence (ExternalControlEffect holdTime).",
            default=60,
        ),
        struct_list("steps", 5, 4, PROFILE_STEP, "Schedule steps in time order."),
    ),
    examples={
        "typical": {
            "command_id": 3,
            "config_version": 5,
            "base_level": 30,
            "boost_level": 100,
            "hold_time_s": 60,
            "steps": [
                {"anchor": "sunset", "offset_min": 0, "dim_level": 80},
                {"anchor": "clock", "offset_min": 1380, "dim_level": 40},
                {"anchor": "clock", "offset_min": 300, "dim_level": 70},
                {"anchor": "sunrise", "offset_min": 15, "dim_level": 0},
            ],
        },
        "minimum": {
            "command_id": 0,
            "config_version": 0,
            "base_level": 0,
            "boost_level": 0,
            "hold_time_s": 0,
            "steps": [],
        },
        "maximum": {
            "command_id": 255,
            "config_version": 65535,
            "base_level": 100,
            "boost_level": 100,
            "hold_time_s": 3600,
            "steps": [
                {"anchor": "clock", "offset_min": 1439, "dim_level": 100},
                {"anchor": "sunset", "offset_min": -720, "dim_level": 100},
                {"anchor": "sunrise", "offset_min": 1439, "dim_level": 100},
                {"anchor": "clock", "offset_min": 1439, "dim_level": 100},
            ],
        },
    },
)

MESSAGES = (LAMP_STATUS, LAMP_COUNTERS, LAMP_PRESENCE, LAMP_OVERRIDE, LAMP_PROFILE)
