"""Pin, bus and counter seams for the sensor drivers: the real ESP32 side, through `machine`.

The drivers in ``firmware/lib/drivers`` never import ``machine``; they receive the objects made
here (or by ``hal.sim_pins.SimPins`` on the host, which has the same methods and the same object
shapes). Only the subset of the MicroPython ``machine`` API that both sides implement is used:

- ``Pin.value()``, ``Pin.irq(handler, trigger)``
- ``I2C.readfrom_mem(addr, reg, n, addrsize=)``, ``I2C.writeto_mem(addr, reg, buf, addrsize=)``
- ``UART.read(n)`` (``None`` when empty), ``UART.any()``, ``UART.write(buf)``
- ``ADC.read_uv()``, ``PWM.duty_u16(v)``
- a one-wire bus with ``reset() -> bool``, ``writebyte(b)``, ``readbyte()``
- an edge counter with ``count()`` and an awaitable ``flag`` (an ISR only counts and sets the
  flag: CONVENTIONS habit 7).

Source: MicroPython docs, "Quick reference for the ESP32" (machine.Pin, I2C, UART, ADC, PWM,
time_pulse_us) and ``micropython-lib/micropython/drivers/bus/onewire``.
"""

try:
    import asyncio
except ImportError:  # pragma: no cover - very old ports
    import uasyncio as asyncio  # type: ignore

import time


class Reboot(Exception):
    """Raised by a host ``power.reset()``: the app restarts from its stored state."""


_RESET_CAUSES = (
    ("PWRON_RESET", "power_on"),
    ("HARD_RESET", "power_on"),
    ("DEEPSLEEP_RESET", "deep_sleep"),
    ("WDT_RESET", "watchdog"),
    ("SOFT_RESET", "software"),
)


class Power:
    """Reset cause, deep sleep and reset on the ESP32 (machine.reset_cause/deepsleep/reset)."""

    def __init__(self):
        import machine  # type: ignore

        self._m = machine

    def reset_reason(self):
        cause = self._m.reset_cause()
        for name, reason in _RESET_CAUSES:
            if getattr(self._m, name, None) == cause:
                return reason
        return "other"

    async def deep_sleep(self, ms):
        self._m.deepsleep(ms)  # does not return: the board boots into main.py again

    def reset(self):
        self._m.reset()


def make_flag():
    """A flag an ISR may set and a task may await: ThreadSafeFlag where it exists."""
    tsf = getattr(asyncio, "ThreadSafeFlag", None)
    if tsf is not None:
        return tsf()
    return EventFlag()


class EventFlag:
    """ThreadSafeFlag's contract (``set``, ``wait`` then auto-clear) on a plain asyncio.Event."""

    def __init__(self):
        self._event = asyncio.Event()

    def set(self):
        self._event.set()

    def clear(self):
        self._event.clear()

    async def wait(self):
        await self._event.wait()
        self._event.clear()


class EdgeCounter:
    """Counts rising edges on a pin from its IRQ; wakes a task through ``flag``."""

    def __init__(self, pin, rising):
        self._count = 0
        self.flag = make_flag()
        self.pin = pin
        pin.irq(handler=self._isr, trigger=rising)

    def _isr(self, _pin):
        # ISR discipline: count and set a flag, nothing else (no allocation).
        self._count += 1
        self.flag.set()

    def count(self):
        return self._count


class _SoftOneWire:
    """Dallas one-wire timing on a GPIO (Maxim AN126 standard speed), via ``onewire``."""

    def __init__(self, pin):
        import onewire  # type: ignore  # bundled with the ESP32 port

        self._ow = onewire.OneWire(pin)

    def reset(self):
        return bool(self._ow.reset())

    def writebyte(self, value):
        self._ow.writebyte(value)

    def readbyte(self):
        return self._ow.readbyte()


class Pins:
    """Factory for real hardware objects; ``board`` is a module from ``firmware/boards``."""

    def __init__(self, board=None):
        import machine  # type: ignore

        self._m = machine
        self.board = board

    def output(self, number, value=0):
        return self._m.Pin(number, self._m.Pin.OUT, value=value)

    def input(self, number, pull_up=False):
        if pull_up:
            return self._m.Pin(number, self._m.Pin.IN, self._m.Pin.PULL_UP)
        return self._m.Pin(number, self._m.Pin.IN)

    def i2c(self, scl, sda, freq=400_000, bus_id=0):
        return self._m.I2C(bus_id, scl=self._m.Pin(scl), sda=self._m.Pin(sda), freq=freq)

    def uart(self, tx, rx, baudrate, bus_id=1):
        return self._m.UART(bus_id, baudrate=baudrate, tx=tx, rx=rx, timeout=0)

    def adc(self, number):
        adc = self._m.ADC(self._m.Pin(number))
        try:
            adc.atten(self._m.ADC.ATTN_11DB)  # 0-3.1 V range (ESP32 TRM, SAR ADC)
        except AttributeError:
            pass
        return adc

    def pwm(self, number, freq):
        return self._m.PWM(self._m.Pin(number), freq=freq, duty_u16=0)

    def onewire(self, number):
        return _SoftOneWire(self._m.Pin(number))

    def counter(self, number):
        pin = self._m.Pin(number, self._m.Pin.IN)
        return EdgeCounter(pin, self._m.Pin.IRQ_RISING)

    def trigger(self, pin, width_us):
        """A short high pulse (ultrasonic trigger); microseconds, so a busy wait is right."""
        pin.value(1)
        time.sleep_us(width_us)  # type: ignore[attr-defined]
        pin.value(0)

    def pulse_in(self, pin, level, timeout_us):
        """Width of the next pulse at ``level`` in µs, negative on timeout (machine semantics)."""
        return self._m.time_pulse_us(pin, level, timeout_us)
