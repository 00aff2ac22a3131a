"""Driver checks on simulated buses: prints one JSON line of what each driver read, wrote and
returned (byte-level logs). tests/firmware_apps/test_drivers.py holds the datasheet expectations."""

import json

from drivers import SensorError
from drivers import sim_devices as sd
from drivers.battery import BatteryADC
from drivers.dimmer import Dimmer
from drivers.ds18b20 import DS18B20, crc8, decode_scratchpad
from drivers.energy_meter import EnergyMeter
from drivers.ranging import fill_percent, robust_distance
from drivers.tilt import LIS3DH, TiltSwitch
from drivers.ultrasonic import A02YYUW, JSNSR04T, parse_a02
from drivers.vl53l1x import VL53L1X
from hal.sim_pins import SimPins
from hal.vclock import VirtualClock


def hexlog(log):
    out = []
    for entry in log:
        out.append([x.hex() if isinstance(x, (bytes, bytearray)) else x for x in entry])
    return out


async def checks(clock):
    out = {}
    pins = SimPins(clock)

    # VL53L1X
    tof = pins.i2c_bus.attach(0x29, sd.VL53L1XModel(1234))
    drv = VL53L1X(pins.i2c_bus, clock)
    out["vl53_mm"] = await drv.read_mm()
    out["vl53_log"] = hexlog(pins.i2c_bus.log)
    tof.script = [None]
    out["vl53_invalid"] = await drv.read_mm()
    other = SimPins(clock)
    bad = other.i2c_bus.attach(0x29, sd.VL53L1XModel(10))
    bad.regs[0x010F] = 0xEE
    try:
        await VL53L1X(other.i2c_bus, clock).init()
        out["vl53_wrong_id"] = "accepted"
    except SensorError as exc:
        out["vl53_wrong_id"] = str(exc)
    out["vl53_absent"] = await VL53L1X(SimPins(clock).i2c_bus, clock).read_mm()

    # DS18B20
    ow = pins.onewire(4)
    ow.model = sd.DS18B20Model(-10.125)
    out["ds_c"] = await DS18B20(ow, clock).read_c()
    out["ds_log"] = ow.log[:]
    t0 = clock.ticks_ms()
    ow.model.corrupt_next = True
    out["ds_corrupt"] = await DS18B20(ow, clock).read_c()
    out["ds_wait_ms"] = clock.ticks_ms() - t0
    out["ds_absent"] = await DS18B20(SimPins(clock).onewire(9), clock).read_c()
    out["crc_an27"] = crc8(bytes.fromhex("021cb801000000"))
    out["pad_25"] = decode_scratchpad(
        bytes.fromhex("91014b467fff0c10") + bytes((crc8(bytes.fromhex("91014b467fff0c10")),))
    )

    # A02YYUW
    uart_pins = SimPins(clock)
    a02 = sd.A02Model(uart_pins.uart_bus, 1953)
    out["a02_mm"] = await A02YYUW(uart_pins, 5, 6, clock).read_mm()
    out["a02_parse"] = parse_a02(bytes.fromhex("a507ff07a1a7"))
    out["a02_bad_sum"] = parse_a02(bytes.fromhex("ff07a1a8"))
    a02.corrupt = True
    out["a02_corrupt_read"] = await A02YYUW(uart_pins, 5, 6, clock).read_mm()
    out["a02_baud"] = uart_pins.uart_bus.baudrate

    # JSN-SR04T
    jp = SimPins(clock)
    jsn = sd.JSNModel(jp, 5, 6, 1000)
    drv = JSNSR04T(jp, 5, 6, clock)
    out["jsn_mm"] = await drv.read_mm()
    out["jsn_trigger"] = jp.triggers[-1]
    out["jsn_echo_us"] = jp.echo_us[6]
    jsn.script = [None, 150]
    out["jsn_timeout"] = await drv.read_mm()
    out["jsn_blind"] = await drv.read_mm()

    # LIS3DH
    lp = SimPins(clock)
    acc = lp.i2c_bus.attach(0x18, sd.LIS3DHModel(90.0))
    out["tilt_deg"] = await LIS3DH(lp.i2c_bus, clock).read_deg()
    out["lis_log"] = hexlog(lp.i2c_bus.log)
    acc.value = 0.0
    out["tilt_upright"] = await LIS3DH(lp.i2c_bus, clock).read_deg()
    acc.regs[0x0F] = 0x32
    try:
        await LIS3DH(lp.i2c_bus, clock).read_deg()
        out["lis_wrong_id"] = "accepted"
    except SensorError as exc:
        out["lis_wrong_id"] = str(exc)
    sw = TiltSwitch(lp, 7)
    lp.pin(7).drive(1)
    out["switch_tilted"] = await sw.read_deg()

    # battery, ranging
    bp = SimPins(clock)
    bp.adc(1).microvolts = 1_550_000
    b = BatteryADC(bp, 1, 2.0)
    out["battery"] = [b.read_mv(), b.percent()]
    out["robust"] = [
        robust_distance([800, 805, 2000, 798, None, 802, 30]),
        robust_distance([None, None, None, 500, None, None, None], min_valid=4),
        robust_distance([100, 900, 1500, 2500, 3500], min_valid=3),
    ]
    out["fill"] = [
        fill_percent(800, 100, 30),
        fill_percent(300, 100, 30),
        fill_percent(1400, 100, 30),
    ]

    # dimmer and relay
    dp = SimPins(clock)
    dim = Dimmer(dp, 2, 3, clock, "0-10V")
    await dim.fade_to(50, 0)
    out["dim_50"] = [dp.pwms[2].duty, dp.pin(3).value()]
    t0 = clock.ticks_ms()
    await dim.fade_to(100, 1000)
    out["dim_fade"] = [clock.ticks_ms() - t0, len(dp.pwms[2].history), dp.pwms[2].duty]
    await dim.fade_to(0, 0)
    out["dim_off"] = [dp.pin(3).value(), dim.switch_ons, dp.pin(3).writes]
    d110 = Dimmer(SimPins(clock), 2, 3, clock, "1-10V", invert=True)
    out["dim_110"] = [d110.duty_for(1), d110.duty_for(100), d110.duty_for(0)]

    # energy meter
    mp = SimPins(clock)
    meter = EnergyMeter(mp, 6, clock, w_per_hz=0.136)
    mp.counters[6].set_frequency(100)
    await clock.sleep_ms(60_000)
    out["meter"] = [meter.sample(), meter.energy_wh()]
    # sunrise/sunset (minutes after 00:00 UTC), Copenhagen, and EU summer time changes
    from drivers import sun

    cph = (55.6761, 12.5683)
    out["sun"] = {}
    for y, m, d in ((2026, 6, 21), (2026, 12, 21), (2026, 3, 20)):
        out["sun"]["%d-%02d-%02d" % (y, m, d)] = sun.sunrise_sunset_utc(
            sun.days_from_civil(y, m, d), *cph
        )
    out["sun_polar"] = sun.sunrise_sunset_utc(sun.days_from_civil(2026, 12, 21), 78.22, 15.65)
    march = sun.days_from_civil(2026, 3, 29) * 86400 + 3600
    october = sun.days_from_civil(2026, 10, 25) * 86400 + 3600
    out["tz"] = [
        sun.utc_offset_min(march - 1),
        sun.utc_offset_min(march),
        sun.utc_offset_min(october - 1),
        sun.utc_offset_min(october),
        sun.utc_offset_min(march, 0, "none"),
    ]
    out["civil"] = [
        sun.civil_from_days(sun.days_from_civil(2028, 2, 29)),
        sun.days_from_civil(2000, 1, 1),
    ]
    # lamp profile resolution (apps.lamp_node.profile_level), local time CET/CEST
    from apps.lamp_node import profile_level

    night = [
        {"anchor": "clock", "offset_min": 1380, "dim_level": 50},
        {"anchor": "clock", "offset_min": 300, "dim_level": 70},
        {"anchor": "sunset", "offset_min": 0, "dim_level": 100},
        {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
    ]
    day0 = sun.days_from_civil(2026, 11, 28) * 86400  # 00:00 UTC; CET = UTC+1
    out["profile"] = [
        profile_level(night, day0 + h * 3600, *cph) for h in (1, 4, 5, 10, 16, 22, 23)
    ]
    out["profile_polar"] = [
        profile_level(night, day0 + h * 3600, 78.22, 15.65) for h in (1, 4, 10, 16, 22)
    ]
    out["profile_empty"] = profile_level([], day0, *cph)
    return out


def main():
    clock = VirtualClock()
    print(json.dumps(clock.run(checks(clock))))


main()
