"""Simulated boards: the firmware's own drivers on ``hal.sim_pins``, with chip models that read
the simulated world.

The drivers are chosen by the apps' own ``build_sensors`` (``apps/bin_node.py``), exactly as on
a board from ``config.json``; only the pins are simulated. Each chip model of
``drivers.sim_devices`` (JSN-SR04T echo, DS18B20 scratchpad, LIS3DH registers) takes its
physical input from the world through a ``value`` property, read at the moment the firmware
samples it, so a node measures what the world is at that simulated instant.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from tools.sim.world import SimBin, SimLamp, World

# A Heltec-like pin map for the simulated board (numbers only name the simulated pins).
SIM_BOARD = SimpleNamespace(
    NAME="sim",
    PINS={
        "us_trig": 5,
        "us_echo": 6,
        "uart_tx": 7,
        "uart_rx": 8,
        "onewire": 4,
        "i2c_scl": 18,
        "i2c_sda": 17,
        "tilt_switch": 19,
        "battery_adc": 1,
        "battery_divider": 2.0,
        "presence": 33,
        "dim_pwm": 25,
        "relay": 26,
        "meter_cf": 27,
        "supply_sense": 34,
    },
)

_LIS3DH_ADDRESS = 0x18  # drivers/tilt.py ADDRESS (SA0 low)
_BATTERY_UV = 1_600_000  # 3.2 V pack behind the 2:1 divider: about 85 % (drivers/battery.py)


def _world_model(base: type, getter: Callable[[], Any]) -> Any:
    """A subclass of a chip model whose steady ``value`` is read from the world."""

    class WorldModel(base):  # type: ignore[valid-type, misc]
        @property
        def value(self) -> Any:
            return getter()

        @value.setter
        def value(self, _ignored: Any) -> None:
            pass  # the world owns this quantity

    return WorldModel


def bin_sensors(
    fw: Any, pins: Any, clock: Any, world_bin: SimBin, now: Callable[[], float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bin's drivers (``apps.bin_node.build_sensors``) and the chip models behind them."""
    devices = fw.sim_devices
    p = SIM_BOARD.PINS
    range_model = _world_model(devices.JSNModel, lambda: round(world_bin.distance_cm() * 10))(
        pins, p["us_trig"], p["us_echo"]
    )
    temperature = _world_model(devices.DS18B20Model, lambda: world_bin.temperature_c)()
    pins.onewire(p["onewire"]).model = temperature
    tilt = _world_model(devices.LIS3DHModel, lambda: world_bin.tilt_deg)()
    pins.i2c(p["i2c_scl"], p["i2c_sda"]).attach(_LIS3DH_ADDRESS, tilt)
    pins.adc(p["battery_adc"]).microvolts = _BATTERY_UV
    app_cfg = {
        "range_sensor": "jsn-sr04t",
        "temperature_sensor": "ds18b20",
        "tilt_sensor": "lis3dh",
    }
    sensors = fw.bin_node.build_sensors(pins, SIM_BOARD, app_cfg, clock)
    return sensors, {"range": range_model, "temperature": temperature, "tilt": tilt}


def trim_logs(pins: Any, keep: int = 64) -> None:
    """Bound the byte-level logs the simulated buses keep for driver tests."""
    for name in ("triggers",):
        log = getattr(pins, name, None)
        if isinstance(log, list) and len(log) > keep:
            del log[:-keep]
    for bus in (getattr(pins, "i2c_bus", None), *getattr(pins, "onewires", {}).values()):
        log = getattr(bus, "log", None)
        if isinstance(log, list) and len(log) > keep:
            del log[:-keep]
    for pin in getattr(pins, "pins", {}).values():
        if isinstance(pin.writes, list) and len(pin.writes) > keep:
            del pin.writes[:-keep]
    for pwm in getattr(pins, "pwms", {}).values():
        if isinstance(pwm.history, list) and len(pwm.history) > keep:
            del pwm.history[:-keep]


_METER_W_PER_HZ = 0.136  # apps/lamp_node.py default for the BL0937 CF output


def lamp_app(
    fw: Any,
    sim: Any,
    clock: Any,
    lamp: SimLamp,
    world: World,
    *,
    report_interval_s: int,
) -> Any:
    """The lamp app (``apps.lamp_node.LampNode``) on a simulated board.

    The lamp driver model (``LampLoadModel``) sits behind the firmware's dimmer PWM and relay and
    drives the energy meter's CF pulses; its light level is written back to the world. Road users
    entering the lamp's detection radius pulse the presence input (``sim.models["presence"]``).
    """
    p = SIM_BOARD.PINS
    pins = sim.pins
    app_cfg: dict[str, Any] = {
        "report_interval_s": report_interval_s,
        "dimming": "0-10V",
        "presence": "pir",
        "meter_w_per_hz": _METER_W_PER_HZ,
        "rated_power_w": lamp.rated_power_w,
    }
    hw = fw.lamp_node.build_hardware(pins, SIM_BOARD, app_cfg, clock)
    load = fw.sim_devices.LampLoadModel(
        pins, p["dim_pwm"], p["relay"], p["meter_cf"], _METER_W_PER_HZ, rated_w=lamp.rated_power_w
    )
    update = load.update

    def update_and_tell_world() -> None:
        update()
        world.set_dim_level(lamp.dev_eui, round(load.power_w() / load.rated_w * 100))

    load.update = update_and_tell_world
    load.update()
    sim.models.update({"load": load, "presence": pins.counter(p["presence"])})
    return fw.lamp_node.LampNode(
        sim.node,
        clock,
        sim.power,
        sim.nvs,
        hw,
        app_cfg,
        latitude=lamp.latitude,
        longitude=lamp.longitude,
    )
