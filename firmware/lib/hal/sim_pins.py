"""Host-side twins of ``hal.pins``: pins, buses and counters that a simulated world drives.

Every bus keeps a byte-level log so driver tests can assert the exact transactions a datasheet
asks for, and every bus talks to a *device model* (``drivers.sim_devices``) that answers like the
chip. The world sets physical quantities on the models (distance, temperature, tilt, power) and
toggles input pins; the drivers cannot tell the difference from ``hal.pins.Pins``.

Runs unmodified under MicroPython (unix port) and CPython.
"""

from hal.pins import EventFlag, Reboot

IRQ_RISING = 1
IRQ_FALLING = 2

_ENODEV = 19
LOG_KEEP = 256  # logs keep the most recent entries: a simulated week must not fill the heap


def _log(log, entry):
    if len(log) >= 2 * LOG_KEEP:
        del log[: len(log) - LOG_KEEP]
    log.append(entry)  # errno ENODEV: what machine.I2C raises when nobody ACKs the address


class SimPin:
    """A GPIO: outputs record what was written, inputs are driven by the world."""

    def __init__(self, number):
        self.number = number
        self._value = 0
        self._handler = None
        self._trigger = 0
        self.writes = []  # every value written by the firmware, in order
        self.on_write = None  # world hook: called with the new value

    def value(self, v=None):
        if v is None:
            return self._value
        v = 1 if v else 0
        _log(self.writes, v)
        self._value = v
        if self.on_write is not None:
            self.on_write(v)
        return None

    def irq(self, handler=None, trigger=IRQ_RISING):
        self._handler = handler
        self._trigger = trigger

    # world side
    def drive(self, v):
        """Set an input level as the outside world would; edges fire the IRQ handler."""
        v = 1 if v else 0
        old, self._value = self._value, v
        if self._handler is None or old == v:
            return
        if (v and self._trigger & IRQ_RISING) or (not v and self._trigger & IRQ_FALLING):
            self._handler(self)

    def pulse(self):
        self.drive(1)
        self.drive(0)


class SimI2C:
    """An I2C controller with models at addresses; ``log`` holds (op, addr, reg, bytes)."""

    def __init__(self):
        self.devices = {}
        self.log = []

    def attach(self, address, model):
        self.devices[address] = model
        return model

    def scan(self):
        return sorted(self.devices)

    def _device(self, addr):
        dev = self.devices.get(addr)
        if dev is None:
            raise OSError(_ENODEV)
        return dev

    def readfrom_mem(self, addr, reg, nbytes, addrsize=8):
        data = bytes(self._device(addr).read(reg, nbytes))
        _log(self.log, ("r", addr, reg, data))
        return data

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        data = self.readfrom_mem(addr, reg, len(buf), addrsize)
        buf[:] = data

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        data = bytes(buf)
        self._device(addr).write(reg, data)
        _log(self.log, ("w", addr, reg, data))


class SimUART:
    """A UART: the model tops up ``rx`` when the firmware looks; ``tx`` logs what was sent."""

    def __init__(self, baudrate=9600):
        self.baudrate = baudrate
        self.rx = bytearray()
        self.tx = bytearray()
        self.model = None  # has .refill(uart) -> bytes to append

    def _top_up(self):
        if not self.rx and self.model is not None:
            self.rx.extend(self.model.refill())

    def any(self):
        self._top_up()
        return len(self.rx)

    def read(self, n=-1):
        self._top_up()
        if not self.rx:
            return None  # machine.UART returns None when nothing arrived before the timeout
        if n is None or n < 0 or n > len(self.rx):
            n = len(self.rx)
        data = bytes(self.rx[:n])
        self.rx[:n] = b""
        return data

    def write(self, buf):
        if len(self.tx) > 4 * LOG_KEEP:
            self.tx[: 2 * LOG_KEEP] = b""
        self.tx.extend(buf)
        return len(buf)


class SimADC:
    def __init__(self, microvolts=0):
        self.microvolts = microvolts

    def read_uv(self):
        return int(self.microvolts)


class SimPWM:
    def __init__(self, freq):
        self.freq = freq
        self.duty = 0
        self.history = []  # every duty written
        self.on_duty = None  # world hook

    def duty_u16(self, value=None):
        if value is None:
            return self.duty
        self.duty = int(value)
        _log(self.history, self.duty)
        if self.on_duty is not None:
            self.on_duty(self.duty)
        return None


class SimOneWire:
    """A one-wire bus with one device model; ``log`` holds ('reset'|'w'|'r', byte)."""

    def __init__(self):
        self.model = None
        self.log = []

    def reset(self):
        present = self.model is not None and self.model.reset()
        _log(self.log, ("reset", 1 if present else 0))
        return present

    def writebyte(self, value):
        _log(self.log, ("w", value))
        if self.model is not None:
            self.model.write_byte(value)

    def readbyte(self):
        value = self.model.read_byte() if self.model is not None else 0xFF  # idle bus reads 1s
        _log(self.log, ("r", value))
        return value


class SimCounter:
    """Pulses from the world: explicit ``add`` or a frequency integrated over virtual time."""

    def __init__(self, clock=None):
        self._count = 0
        self._frac = 0.0
        self._hz = 0.0
        self._since = None
        self._clock = clock
        self.flag = EventFlag()

    def _integrate(self):
        if self._clock is None:
            return
        now = self._clock.ticks_ms()
        if self._since is not None and self._hz > 0:
            self._frac += self._hz * (now - self._since) / 1000.0
            whole = int(self._frac)
            self._count += whole
            self._frac -= whole
        self._since = now

    def set_frequency(self, hz):
        self._integrate()
        self._hz = float(hz)

    def add(self, n=1):
        self._integrate()
        self._count += n
        self.flag.set()

    def count(self):
        self._integrate()
        return self._count


class SimPins:
    """The host twin of ``hal.pins.Pins``. Objects are created once per number and kept, so
    the world (or a test) can reach them afterwards through ``pin(n)``, ``i2c_bus`` …"""

    def __init__(self, clock=None, board=None):
        self.clock = clock
        self.board = board
        self.pins = {}
        self.i2c_bus = SimI2C()
        self.uart_bus = SimUART()
        self.adcs = {}
        self.pwms = {}
        self.onewires = {}
        self.counters = {}
        self.echo_us = {}  # echo pin number -> width of the next echo pulse in µs (None: none)
        self.triggers = []  # (pin number, width µs) of every trigger pulse

    def pin(self, number):
        p = self.pins.get(number)
        if p is None:
            p = self.pins[number] = SimPin(number)
        return p

    def output(self, number, value=0):
        p = self.pin(number)
        p.value(value)
        return p

    def input(self, number, pull_up=False):
        p = self.pin(number)
        if pull_up and not p.writes:
            p._value = 1
        return p

    def i2c(self, scl, sda, freq=400_000, bus_id=0):
        return self.i2c_bus

    def uart(self, tx, rx, baudrate, bus_id=1):
        self.uart_bus.baudrate = baudrate
        return self.uart_bus

    def adc(self, number):
        a = self.adcs.get(number)
        if a is None:
            a = self.adcs[number] = SimADC()
        return a

    def pwm(self, number, freq):
        p = self.pwms.get(number)
        if p is None:
            p = self.pwms[number] = SimPWM(freq)
        return p

    def onewire(self, number):
        ow = self.onewires.get(number)
        if ow is None:
            ow = self.onewires[number] = SimOneWire()
        return ow

    def counter(self, number):
        c = self.counters.get(number)
        if c is None:
            c = self.counters[number] = SimCounter(self.clock)
            pin = self.pin(number)
            pin.irq(handler=lambda _p: c.add(1), trigger=IRQ_RISING)
        return c

    def trigger(self, pin, width_us):
        _log(self.triggers, (pin.number, width_us))
        pin.value(1)
        pin.value(0)

    def pulse_in(self, pin, level, timeout_us):
        width = self.echo_us.get(pin.number)
        if width is None or width > timeout_us:
            return -1  # machine.time_pulse_us: -1 when the pulse did not come in time
        return int(width)


class SimPower:
    """Deep sleep and reset on the host: sleeping waits on the HAL clock; ``reset`` raises
    ``Reboot`` for the app to restart from its stores. Records what happened for the bench."""

    def __init__(self, clock, reason="power_on"):
        self._clock = clock
        self.reason = reason
        self.sleeps = 0
        self.slept_ms = 0
        self.awake_ms = 0  # time spent awake between deep sleeps (what the battery pays for)
        self._woke = clock.ticks_ms()
        self.resets = 0

    def reset_reason(self):
        return self.reason

    async def deep_sleep(self, ms):
        self.sleeps += 1
        self.slept_ms += ms
        self.awake_ms += self._clock.ticks_ms() - self._woke
        self.reason = "deep_sleep"
        await self._clock.sleep_ms(ms)
        self._woke = self._clock.ticks_ms()

    def reset(self):
        self.resets += 1
        self.reason = "software"
        raise Reboot()
