"""The app-side link (see ``apps.node``) over the firmware's LoRaWAN MAC (``lorawan.mac.Mac``).

Thin on purpose: join/send results become ``ok`` and a list of downlinks; class C data arrive
through ``Mac.on_downlink``; the network time comes from DeviceTimeAns (L2 1.0.4 §5.9), which
gives GPS seconds at the end of the uplink that asked for it.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:

    def const(x):
        return x


# GPS epoch (1980-01-06) in Unix seconds, minus the leap seconds since then (18 from 2017-01-01,
# IERS Bulletin C): DeviceTimeAns counts GPS seconds, which have no leap seconds.
_GPS_TO_UNIX_S = const(315964800 - 18)
_BUSY_POLL_MS = const(500)
_BUSY_LIMIT_MS = const(30000)  # an uplink cycle: TX, RX1, RX2 (L2 §3.3), ack retries


class MacLink:
    def __init__(self, mac, clock, join_attempts=8, max_wait_ms=0, activation="otaa", abp=None):
        self.mac = mac
        self.clock = clock
        self.join_attempts = join_attempts
        self.max_wait_ms = max_wait_ms
        self.activation = activation
        self.abp = abp  # (dev_addr int, nwk_s_key, app_s_key) for ABP

    async def join(self):
        mac = self.mac
        if mac.joined:
            ok = True  # a session restored from RTC/NVS after deep sleep or a reset
        elif self.activation == "abp" and self.abp is not None:
            mac.activate_abp(*self.abp)
            ok = mac.joined
        else:
            ok = (await mac.join(self.join_attempts)).ok
        if ok and mac.device_time is None:
            mac.request_device_time()  # rides on the next uplink (device_info)
        return ok

    async def send(self, fport, data, confirmed):
        r = await self.mac.send(fport, data, confirmed, self.max_wait_ms)
        # the MAC is shared (the FUOTA agent answers on ports 200-202): while it runs another
        # uplink cycle, wait for it rather than lose this report; bounded by one cycle plus the
        # duty-cycle wait this link allows
        waited = 0
        while r.status == "busy" and waited < self.max_wait_ms + _BUSY_LIMIT_MS:
            await self.clock.sleep_ms(_BUSY_POLL_MS)
            waited += _BUSY_POLL_MS
            r = await self.mac.send(fport, data, confirmed, self.max_wait_ms)
        downlinks = []
        if r.fport is not None and r.payload is not None:
            downlinks.append((r.fport, bytes(r.payload)))
        return r.ok, downlinks

    def set_receiver(self, callback):
        self.mac.on_downlink = callback

    def set_class(self, device_class):
        self.mac.set_class(device_class)

    async def device_time(self):
        dt = self.mac.device_time
        if dt is None:
            self.mac.request_device_time()
            return None
        secs, _frac, tx_done = dt
        elapsed_ms = self.clock.ticks_diff(self.clock.ticks_ms(), tx_done)
        return secs + _GPS_TO_UNIX_S + elapsed_ms // 1000
