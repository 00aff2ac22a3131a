"""ST VL53L1X time-of-flight ranging over I2C (16-bit register addresses, big-endian values).

Registers and their use follow ST's VL53L1X ultra-lite driver (ULD, UM2510 / VL53L1X_api.c):
IDENTIFICATION__MODEL_ID 0x010F reads 0xEACC; FIRMWARE__SYSTEM_STATUS 0x00E5 bit 0 = booted;
GPIO_HV_MUX__CTRL 0x0030 bit 4 = interrupt polarity (0 = active high);
GPIO__TIO_HV_STATUS 0x0031 bit 0 = data ready (at that polarity); SYSTEM__INTERRUPT_CLEAR 0x0086;
SYSTEM__MODE_START 0x0087 (0x40 start ranging, 0x00 stop); RESULT__RANGE_STATUS 0x0089 (low five
bits; 9 = "range valid" in the ULD status table); RESULT__FINAL_CROSSTALK_CORRECTED_RANGE_MM_SD0
0x0096 (uint16 mm).

Known limit: the ULD's 91-byte default configuration block (0x2D-0x87) is not written; the sensor
runs on its boot defaults (long distance mode, 100 ms budget).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:

    def const(x):
        return x


from drivers import SensorError

ADDRESS = const(0x29)
MODEL_ID = const(0x010F)
FIRMWARE_SYSTEM_STATUS = const(0x00E5)
GPIO_HV_MUX_CTRL = const(0x0030)
GPIO_TIO_HV_STATUS = const(0x0031)
SYSTEM_INTERRUPT_CLEAR = const(0x0086)
SYSTEM_MODE_START = const(0x0087)
RESULT_RANGE_STATUS = const(0x0089)
RESULT_RANGE_MM = const(0x0096)
_RANGE_VALID = const(9)
_POLL_MS = const(10)
_TIMEOUT_MS = const(500)


class VL53L1X:
    def __init__(self, i2c, clock, address=ADDRESS):
        self._i2c = i2c
        self._clock = clock
        self._addr = address
        self._polarity = 1
        self._ready = False

    def _read(self, reg, n):
        return self._i2c.readfrom_mem(self._addr, reg, n, addrsize=16)

    def _write(self, reg, value):
        self._i2c.writeto_mem(self._addr, reg, bytes((value,)), addrsize=16)

    async def init(self):
        try:
            model = self._read(MODEL_ID, 2)
        except OSError:
            # no "from": MicroPython does not chain exceptions (and warns on stdout)
            raise SensorError("VL53L1X does not answer at 0x%02x" % self._addr)
        if model[0] != 0xEA or model[1] != 0xCC:
            raise SensorError("not a VL53L1X: model id %02x%02x" % (model[0], model[1]))
        waited = 0
        while not (self._read(FIRMWARE_SYSTEM_STATUS, 1)[0] & 0x01):
            if waited >= _TIMEOUT_MS:
                raise SensorError("VL53L1X did not boot")
            await self._clock.sleep_ms(_POLL_MS)
            waited += _POLL_MS
        self._polarity = 0 if self._read(GPIO_HV_MUX_CTRL, 1)[0] & 0x10 else 1
        self._ready = True

    async def read_mm(self):
        try:
            if not self._ready:
                await self.init()
            self._write(SYSTEM_MODE_START, 0x40)
            waited = 0
            while (self._read(GPIO_TIO_HV_STATUS, 1)[0] & 0x01) != self._polarity:
                if waited >= _TIMEOUT_MS:
                    self._write(SYSTEM_MODE_START, 0x00)
                    return None
                await self._clock.sleep_ms(_POLL_MS)
                waited += _POLL_MS
            status = self._read(RESULT_RANGE_STATUS, 1)[0] & 0x1F
            raw = self._read(RESULT_RANGE_MM, 2)
            self._write(SYSTEM_INTERRUPT_CLEAR, 0x01)
            self._write(SYSTEM_MODE_START, 0x00)
        except (OSError, SensorError):
            self._ready = False  # absent or wrong chip: no reading (the app reports a fault)
            return None
        if status != _RANGE_VALID:
            return None
        return (raw[0] << 8) | raw[1]
