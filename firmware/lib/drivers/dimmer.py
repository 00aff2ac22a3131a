"""Lamp output: a PWM-driven 0-10 V / 1-10 V dimming interface with fades, and a relay for off.

IEC 60929 Annex E (1-10 V) and the 0-10 V convention: the control voltage maps linearly to the
light level; 1-10 V drivers do not go below their minimum (about 10 %), so "off" is the relay
(TALQ LampActuatorFunction: level 0 = off). The ESP32 PWM feeds an RC filter and an amplifier
(x3) for 0-10 V, or an open-collector stage that sinks the 1-10 V line (``invert``).
A fade moves the level in at most 20 steps no shorter than 50 ms, through the HAL clock.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:

    def const(x):
        return x


_PWM_HZ = const(1000)
_MIN_STEP_MS = const(50)
_MAX_STEPS = const(20)


class Dimmer:
    def __init__(self, pins, pwm_pin, relay_pin, clock, interface="0-10V", invert=False):
        self._pwm = pins.pwm(pwm_pin, _PWM_HZ)
        self._relay = pins.output(relay_pin, 0)
        self._clock = clock
        self._min_volts = 1.0 if interface == "1-10V" else 0.0
        self._invert = invert
        self.level = 0  # what the output is at now, 0..100 %
        self.relay_on = False
        self.switch_ons = 0  # off -> on transitions of the relay (TALQ switchOnCounter)

    def duty_for(self, level):
        volts = self._min_volts + (10.0 - self._min_volts) * level / 100 if level > 0 else 0.0
        duty = int(volts * 65535 / 10 + 0.5)
        duty = 65535 if duty > 65535 else duty
        return 65535 - duty if self._invert else duty

    def _apply(self, level):
        if level > 0 and not self.relay_on:
            self._pwm.duty_u16(self.duty_for(level))  # level first, then mains: no flash at 100 %
            self._relay.value(1)
            self.relay_on = True
            self.switch_ons += 1
        elif level <= 0 and self.relay_on:
            self._relay.value(0)
            self.relay_on = False
        self._pwm.duty_u16(self.duty_for(level))
        self.level = level

    async def fade_to(self, level, fade_ms=0):
        level = 0 if level < 0 else 100 if level > 100 else int(level)
        start = self.level
        if fade_ms <= 0 or start == level:
            self._apply(level)
            return
        steps = fade_ms // _MIN_STEP_MS
        steps = _MAX_STEPS if steps > _MAX_STEPS else 1 if steps < 1 else steps
        step_ms = fade_ms // steps
        if start == 0:
            self._apply(1 if level > 0 else 0)  # relay closes at the bottom of the fade
            start = self.level
        for i in range(1, steps + 1):
            await self._clock.sleep_ms(step_ms)
            self._apply(start + (level - start) * i // steps)
