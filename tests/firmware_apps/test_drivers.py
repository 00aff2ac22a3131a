"""Sensor and actuator drivers against simulated buses, byte for byte as the datasheets say.

Sources of the expectations: VL53L1X ULD register map (UM2510 / VL53L1X_api.h), Maxim DS18B20
datasheet and application note AN27 (CRC-8 example: ROM 02 1C B8 01 00 00 00 → A2), DFRobot
A02YYUW wiki (frame ``FF 07 A1 A7`` = 1953 mm), ST LIS3DH datasheet (WHO_AM_I 0x33, CTRL_REG1
0x20, CTRL_REG4 0x23, OUT_X_L 0x28 with auto-increment 0x80), JSN-SR04T datasheet (≥ 10 µs
trigger, distance = echo time × 340 m/s / 2), NOAA solar calculator (published Copenhagen
sunrise/sunset, timeanddate.com: 21 Jun 2026 04:25/21:57 CEST, 21 Dec 2026 08:37/15:38 CET).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.firmware_apps.conftest import MP_DIR, ROOT
from tests.helpers import procs

_cache: dict[str, Any] = {}


def checks(impl: str) -> Any:
    if impl not in _cache:
        script = MP_DIR / "driver_checks.py"
        if impl == "micropython":
            _cache[impl] = procs.run_micropython_json(script, path=[MP_DIR])
        else:
            import json
            import os
            import subprocess
            import sys

            paths = [MP_DIR, ROOT / "firmware" / "lib", ROOT / "firmware"]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}
            out = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
            )
            _cache[impl] = json.loads(out.stdout.splitlines()[-1])
    return _cache[impl]


def test_vl53l1x_register_sequence(impl: str) -> None:
    c = checks(impl)
    assert c["vl53_mm"] == 1234
    # addr 0x29; 16-bit register addresses; values big-endian
    assert c["vl53_log"] == [
        ["r", 0x29, 0x010F, "eacc"],  # IDENTIFICATION__MODEL_ID
        ["r", 0x29, 0x00E5, "01"],  # FIRMWARE__SYSTEM_STATUS: booted
        ["r", 0x29, 0x0030, "01"],  # GPIO_HV_MUX__CTRL: bit 4 clear = active-high interrupt
        ["w", 0x29, 0x0087, "40"],  # SYSTEM__MODE_START: start ranging
        ["r", 0x29, 0x0031, "01"],  # GPIO__TIO_HV_STATUS: data ready
        ["r", 0x29, 0x0089, "09"],  # RESULT__RANGE_STATUS: 9 = range valid
        ["r", 0x29, 0x0096, "04d2"],  # RESULT__FINAL_CROSSTALK_CORRECTED_RANGE_MM_SD0 = 1234
        ["w", 0x29, 0x0086, "01"],  # SYSTEM__INTERRUPT_CLEAR
        ["w", 0x29, 0x0087, "00"],  # stop
    ]
    assert c["vl53_invalid"] is None  # a status other than 9 is no reading
    assert c["vl53_wrong_id"] == "not a VL53L1X: model id eecc"
    assert c["vl53_absent"] is None  # nobody ACKs: no reading, no exception


def test_ds18b20_one_wire_bytes_and_crc(impl: str) -> None:
    c = checks(impl)
    assert c["crc_an27"] == 0xA2
    assert c["pad_25"] == 25.0625  # 0x0191 / 16
    assert c["ds_c"] == -10.125  # 0xFF5E, two's complement
    log = [tuple(x) for x in c["ds_log"]]
    assert log[:6] == [
        ("reset", 1),
        ("w", 0xCC),  # SKIP ROM
        ("w", 0x44),  # CONVERT T
        ("reset", 1),
        ("w", 0xCC),
        ("w", 0xBE),  # READ SCRATCHPAD
    ]
    pad = bytes(v for op, v in log[6:] if op == "r")
    assert len(pad) == 9 and pad[:2] == bytes.fromhex("5eff")
    assert c["ds_wait_ms"] == 750  # 12-bit conversion time, waited on the HAL clock
    assert c["ds_corrupt"] is None  # a CRC mismatch is no reading
    assert c["ds_absent"] is None  # no presence pulse


def test_a02yyuw_frames_and_checksum(impl: str) -> None:
    c = checks(impl)
    assert c["a02_parse"] == 1953  # resynchronises past garbage to FF 07 A1 A7
    assert c["a02_bad_sum"] is None
    assert c["a02_mm"] == 1953
    assert c["a02_baud"] == 9600


def test_jsn_sr04t_trigger_and_echo(impl: str) -> None:
    c = checks(impl)
    assert c["jsn_trigger"][1] >= 10
    assert abs(c["jsn_echo_us"] - 5831) <= 1  # 1 m there and back at 343 m/s
    assert abs(c["jsn_mm"] - 1000) <= 1
    assert c["jsn_timeout"] is None and c["jsn_blind"] is None  # no echo; inside 25 cm


def test_lis3dh_who_am_i_ctrl_regs_and_tilt(impl: str) -> None:
    c = checks(impl)
    log = c["lis_log"]
    assert log[0] == ["r", 0x18, 0x0F, "33"]
    assert log[1] == ["w", 0x18, 0x23, "88"]  # CTRL_REG4: BDU, high resolution, ±2 g
    assert log[2] == ["w", 0x18, 0x20, "27"]  # CTRL_REG1: 10 Hz, X/Y/Z on
    assert log[3][:3] == ["r", 0x18, 0xA8] and len(log[3][3]) == 12  # 6 bytes, auto-increment
    assert log[4] == ["w", 0x18, 0x20, "00"]  # power-down again
    assert abs(c["tilt_deg"] - 90) < 1 and abs(c["tilt_upright"]) < 1
    assert c["lis_wrong_id"] == "not a LIS3DH: WHO_AM_I 0x32"
    assert c["switch_tilted"] == 90.0


def test_battery_ranging_and_fill(impl: str) -> None:
    c = checks(impl)
    assert c["battery"][0] == 3100
    assert 50 <= c["battery"][1] <= 85
    assert c["robust"] == [801, None, None]  # outliers out; too few valid; no agreement
    assert c["fill"] == [50, 100, 0]


def test_dimmer_relay_and_fade(impl: str) -> None:
    c = checks(impl)
    assert c["dim_50"] == [32768, 1]  # 5 V of 10 V; relay closed
    fade_ms, steps, duty = c["dim_fade"]
    assert fade_ms == 1000 and duty == 65535
    assert steps <= 22  # 20 fade steps at most (+ the set and relay-close writes)
    assert c["dim_off"] == [0, 1, [0, 1, 0]]  # one switch-on; relay open at level 0
    # 1-10 V through an inverting open-collector stage: 1 % ≈ 1.09 V, 100 % = 10 V
    assert c["dim_110"][0] == 65535 - round(1.09 * 65535 / 10)
    assert c["dim_110"][1:] == [0, 65535]


def test_energy_meter_from_cf_pulses(impl: str) -> None:
    c = checks(impl)
    power, energy = c["meter"]
    assert power == pytest.approx(13.6)  # 100 Hz × 0.136 W/Hz
    assert energy == pytest.approx(13.6 / 60)  # one minute of it


def test_sunrise_sunset_against_published_times(impl: str) -> None:
    c = checks(impl)

    def hm(minutes: float) -> float:
        return minutes / 60

    rise, set_ = c["sun"]["2026-06-21"]
    assert abs(rise - (4 * 60 + 25 - 120)) <= 2 and abs(set_ - (21 * 60 + 57 - 120)) <= 2
    rise, set_ = c["sun"]["2026-12-21"]
    assert abs(rise - (8 * 60 + 37 - 60)) <= 2 and abs(set_ - (15 * 60 + 38 - 60)) <= 2
    rise, set_ = c["sun"]["2026-03-20"]  # equinox: about 12 h of day
    assert 11.9 < hm(set_ - rise) < 12.4
    assert c["sun_polar"] == [None, None]  # Svalbard in December: polar night
    assert c["tz"] == [60, 120, 120, 60, 0]
    assert c["civil"] == [[2028, 2, 29], 10957]


def test_lamp_profile_resolution_wraps_midnight_and_skips_missing_sun_events(impl: str) -> None:
    c = checks(impl)
    day0 = 1795824000  # 2026-11-28T00:00Z = 01:00 CET
    h = 3600
    # steps: 23:00 CET → 50, 05:00 CET → 70, sunset → 100, sunrise → 0 (Copenhagen)
    levels = [level for level, _ in c["profile"]]
    assert levels == [50, 70, 70, 0, 100, 50, 50]  # at 01, 04, 05, 10, 16, 22, 23 UTC
    nexts = [nxt for _, nxt in c["profile"]]
    assert nexts[0] == day0 + 4 * h  # 05:00 CET
    assert abs(nexts[1] - (day0 + 7 * h + 9 * 60)) < 180  # sunrise ≈ 07:09 UTC
    assert abs(nexts[3] - (day0 + 14 * h + 45 * 60)) < 180  # sunset ≈ 14:45 UTC
    assert nexts[4] == day0 + 22 * h  # 23:00 CET
    assert nexts[5] == day0 + 86400 + 4 * h  # 05:00 CET the next morning
    # Svalbard in polar night: only the clock steps exist
    assert [level for level, _ in c["profile_polar"]] == [50, 70, 70, 70, 50]
    assert c["profile_empty"] == [None, None]
