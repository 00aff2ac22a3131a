"""Maxim DS18B20 temperature over one-wire, one sensor on the bus (SKIP ROM).

Datasheet 19-7487 rev 6: RESET/presence; SKIP ROM 0xCC; CONVERT T 0x44 (12-bit: up to 750 ms);
READ SCRATCHPAD 0xBE returns 9 bytes, byte 8 being the CRC (x^8 + x^5 + x^4 + 1, LSB first, over
bytes 0-7); temperature = int16(byte1:byte0) / 16 °C.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:

    def const(x):
        return x


from drivers import ticks_diff

SKIP_ROM = const(0xCC)
CONVERT_T = const(0x44)
READ_SCRATCHPAD = const(0xBE)
_CONVERSION_MS = const(750)  # tCONV at 12-bit resolution


def crc8(data):
    """Dallas/Maxim CRC-8 (reflected polynomial 0x8C), as in the datasheet's CRC section."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 0x01
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def decode_scratchpad(pad):
    """°C from a 9-byte scratchpad, or ``None`` if the CRC fails."""
    if len(pad) != 9 or crc8(pad[:8]) != pad[8]:
        return None
    raw = pad[0] | (pad[1] << 8)
    if raw & 0x8000:
        raw -= 0x10000
    return raw / 16


class DS18B20:
    def __init__(self, bus, clock):
        self._bus = bus
        self._clock = clock
        self._started = None  # ticks when CONVERT T went out, if it did

    def start(self):
        """Send CONVERT T now, so the 750 ms conversion overlaps other measurements."""
        bus = self._bus
        if not bus.reset():
            self._started = None
            return False
        bus.writebyte(SKIP_ROM)
        bus.writebyte(CONVERT_T)
        self._started = self._clock.ticks_ms()
        return True

    async def read_c(self):
        """°C, or ``None``. Starts a conversion unless ``start()`` did, then waits out tCONV."""
        if self._started is None and not self.start():
            return None
        clock = self._clock
        left = _CONVERSION_MS - ticks_diff(clock, clock.ticks_ms(), self._started)
        self._started = None
        if left > 0:
            await clock.sleep_ms(left)
        bus = self._bus
        if not bus.reset():
            return None
        bus.writebyte(SKIP_ROM)
        bus.writebyte(READ_SCRATCHPAD)
        pad = bytes(bus.readbyte() for _ in range(9))
        return decode_scratchpad(pad)
