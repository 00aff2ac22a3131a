"""A LoRaWAN 1.0.4 class A/C end-device MAC on asyncio (OTAA and ABP, ADR, MAC commands).

Spec: LoRaWAN L2 1.0.4 (TS001-1.0.4, "L2"), regional parameters RP002-1.0.4 ("RP").
Public surface (what apps use)::

    mac = Mac(radio, clock, nvs, rtc, region="EU868", dev_eui=b8, join_eui=b8, app_key=b16)
    result = await mac.join(max_attempts=8)                # JoinResult, .status "joined" | ...
    mac.activate_abp(dev_addr, nwk_s_key, app_s_key)       # instead of join()
    result = await mac.send(fport, payload, confirmed=False)  # SendResult
    mac.set_class("A" | "C"); mac.on_downlink = callback(fport, payload)  # class C data
    fport, payload = await mac.receive(timeout_ms)          # or poll class C data (None on timeout)
    mac.request_link_check(); mac.request_device_time()    # ride on the next uplink
    mac.status                                             # lorawan.status.Status counters

The poll contract: every wait goes through the HAL clock and every radio call is awaited, so
the MAC never blocks the event loop; a frame from the air never raises out of the MAC (it is
dropped and counted in ``status.drops``).

Persistence (L2 §6.2.5, §4.3.1.5; TR007 §4.13): the DevNonce counter is written to NVS *before*
each Join-Request; the whole state goes to RTC memory before every uplink and after every
downlink (deep sleep keeps it); NVS gets it on every join, on MAC setting changes and whenever
the uplink FCnt reaches the last NVS value + N, and a cold boot resumes at that value + N, so no
FCnt is ever sent twice.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


from hal.radio import rx_window, time_on_air_ms
from hal.rng import Rng, hardware_seed

from lorawan import frame
from lorawan import region as regions
from lorawan import status as st
from lorawan.session import (
    FLAG_ABP,
    FLAG_ACK_PENDING,
    FLAG_ADR,
    FLAG_CLASS_C,
    FLAG_JOINED,
    Keys,
    State,
    peek,
    unpack_nonces,
)

_DEBUG = const(False)

_RECEIVE_DELAY2_EXTRA_MS = const(1000)  # RX2 = RX1 + 1 s (L2 §3.3.2)
_ACK_TIMEOUT_MIN_MS = const(1000)  # RETRANSMIT_TIMEOUT 2 s ± 1 s (RP §5.1.9)
_ACK_TIMEOUT_SPAN_MS = const(2000)
_ADR_ACK_LIMIT = const(64)  # RP §5.1.9
_ADR_ACK_DELAY = const(32)
_MAX_OFF_MS = const(86400000)  # longest off-time: 0.1 % sub-band and DutyCycleReq stay below
_NVS_EVERY = const(16)  # FCnt written to NVS every N uplinks; N added on a cold boot
_MAX_FOPTS = const(15)  # FOptsLen is 4 bits (L2 §4.3.1.6)

# MAC command identifiers (L2 §5, Table 4)
_LINK_CHECK = const(0x02)
_LINK_ADR = const(0x03)
_DUTY_CYCLE = const(0x04)
_RX_PARAM_SETUP = const(0x05)
_DEV_STATUS = const(0x06)
_NEW_CHANNEL = const(0x07)
_RX_TIMING_SETUP = const(0x08)
_DL_CHANNEL = const(0x0A)
_DEVICE_TIME = const(0x0D)

# uplink length of each answer or request, CID included (L2 1.0.4 §5, Table 4)
_ANS_LEN = b"\x00\x00\x01\x02\x01\x02\x03\x02\x01\x00\x02\x00\x00\x01"


def _ans_len(cid):
    return _ANS_LEN[cid] if cid < len(_ANS_LEN) and _ANS_LEN[cid] else 1


_KEY_STATE = "mac"  # RTC and NVS key of the State blob
_KEY_SESSION = "session"
_KEY_NONCES = "nonces"


class Mac:
    def __init__(
        self, radio, clock, nvs, rtc, region="EU868", dev_eui=None, join_eui=None,
        app_key=None, battery=None, rng=None, sub_band=0, nvs_every=_NVS_EVERY, adr=True,
    ):  # fmt: skip
        self.radio = radio
        radio.configure()  # sync word, preamble, coding rate, IQ settings (hal.radio)
        self.clock = clock
        self.region = regions.get(region)
        self._nvs = nvs
        self._rtc = rtc
        self._dev_eui = bytes(reversed(bytes(dev_eui))) if dev_eui else None  # MSB-first in
        self._join_eui = bytes(reversed(bytes(join_eui))) if join_eui else None
        self._app_key = bytes(app_key) if app_key else None
        self._battery = battery
        # per-device jitter (L2 §7): the hardware RNG unless the caller (simulator) seeds one
        self._rng = rng or Rng(hardware_seed())
        self._sub_band = sub_band
        self._nvs_every = nvs_every
        self._adr_wanted = adr
        self.status = st.Status()
        self.on_downlink = None  # callback(fport, payload) for class C (and class A) data
        self.multicast = None  # lorawan.multicast.Groups when the node is in multicast groups
        self.boot = "fresh"  # "warm" (RTC), "cold" (NVS, FCnt + N) or "fresh"
        self.link_check = None
        self.device_time = None
        self.last_snr = 0
        # preallocated frame buffers: B0 scratch + PHYPayload (lorawan.frame)
        self._buf = bytearray(frame.BUF_SIZE)
        self._work = bytearray(frame.BUF_SIZE)
        self._fopts = bytearray(_MAX_FOPTS)
        self._answers = bytearray(_MAX_FOPTS)  # answers owed once, until a frame carries them
        self._answers_len = 0
        self._taken = 0
        self._lc_sent = False
        self._dt_sent = False
        self._want_link_check = False
        self._want_device_time = False
        self._band_free = [None] * 8  # per sub-band: ticks when its off-time ends (None: free)
        self._agg_free = None  # aggregated off-time end (DutyCycleReq)
        self._busy = False
        self._c = None  # lorawan.classc.ClassC once class C is used
        self._last_tx_done = 0
        self._keys = None
        self._lc_this = None  # LinkCheckAns / DeviceTimeAns of the frame being processed
        self._dt_this = None
        self._next_dev_nonce, self._last_join_nonce = unpack_nonces(nvs.load(_KEY_NONCES))
        self._restore()

    # ---------------------------------------------------------------- persistence

    def _restore(self):
        warm = State.from_bytes(self._rtc.load(_KEY_STATE))
        cold_blob = self._nvs.load(_KEY_SESSION)
        cold = peek(cold_blob)  # (flags, NwkSKey, nvs_fcnt) or None
        if warm is not None and warm.flags & FLAG_JOINED:
            # RTC memory is only trusted for the session NVS holds, and never behind it
            if cold is None or (cold[1] == warm.nwk_s_key and warm.fcnt_up >= cold[2]):
                self.state = warm
                self.boot = "warm"
                self._keys = Keys(warm.nwk_s_key, warm.app_s_key)
                return
        s = State.from_bytes(cold_blob) if cold is not None and cold[0] & FLAG_JOINED else None
        if s is not None:
            # power was lost: up to N - 1 FCnts after the last NVS write may have been used
            s.fcnt_up = s.nvs_fcnt + self._nvs_every
            self.state = s
            self.boot = "cold"
            self._keys = Keys(s.nwk_s_key, s.app_s_key)
            self._save_rtc()
            return
        self.state = State()
        self._default_plan(self.state)

    def _default_plan(self, s):
        self.region.default_plan(s, self._sub_band)
        s.dr = self.region.default_dr
        s.tx_power = 0
        s.nb_trans = 1
        if self._adr_wanted:
            s.flags |= FLAG_ADR

    def _save_rtc(self):
        self._rtc.save(_KEY_STATE, self.state.pack())

    def _save_nvs(self):
        s = self.state
        s.nvs_fcnt = s.fcnt_up  # every FCnt sent so far is below this
        self._nvs.save(_KEY_SESSION, s.pack())
        self._save_rtc()

    def _persist_before_uplink(self, fcnt):
        s = self.state
        s.fcnt_up = fcnt + 1
        if fcnt >= s.nvs_fcnt + self._nvs_every:
            s.nvs_fcnt = fcnt  # FCnt ≥ this and < this + N may be on the air after a power cut
            self._nvs.save(_KEY_SESSION, s.pack())
        self._save_rtc()

    # ---------------------------------------------------------------- public surface

    @property
    def joined(self):
        return bool(self.state.flags & FLAG_JOINED)

    @property
    def dev_addr(self):
        return self.state.dev_addr

    @property
    def device_class(self):
        return "C" if self.state.flags & FLAG_CLASS_C else "A"

    def activate_abp(self, dev_addr, nwk_s_key, app_s_key):
        """ABP: use these session keys. Counters continue if it is the same session (L2 §6.3)."""
        s = self.state
        if s.flags & FLAG_JOINED and s.dev_addr == dev_addr and s.nwk_s_key == bytes(nwk_s_key):
            return
        s = State()
        self._default_plan(s)
        s.dev_addr = dev_addr
        s.nwk_s_key = bytes(nwk_s_key)
        s.app_s_key = bytes(app_s_key)
        # a class set before the activation holds, as through a join (join.py)
        s.flags |= FLAG_JOINED | FLAG_ABP | (self.state.flags & FLAG_CLASS_C)
        self.state = s
        self._keys = Keys(s.nwk_s_key, s.app_s_key)
        self._save_nvs()
        self._start_class_c()

    def set_class(self, cls):
        """Switch to class "A" or "C" (class C listens on RX2 between uplinks, L2 §6)."""
        if cls not in ("A", "C"):
            raise ValueError("class must be 'A' or 'C'")
        if cls == "C":
            self.state.flags |= FLAG_CLASS_C
            self._start_class_c()
        else:
            self.state.flags &= ~FLAG_CLASS_C
            if self._c is not None:
                self._c.stop()
        self._save_rtc()

    def request_link_check(self):
        self._want_link_check = True

    def request_device_time(self):
        self._want_device_time = True

    async def receive(self, timeout_ms=None):
        """The next class C downlink as (fport, payload), or None after ``timeout_ms``.

        Used when no ``on_downlink`` callback is set; keeps the last few (bounded queue).
        """
        return await self._class_c().receive(timeout_ms)

    # ---------------------------------------------------------------- duty cycle

    def _free_at(self, freq, t):
        """Ticks from which ``freq`` may transmit (sub-band and aggregated off-times); ``t`` is
        now, read once per pick: a second read here could be a millisecond later and make a
        free channel look busy (tests/firmware/mpy/behaviours.py)."""
        if self.region.uses_duty_cycle:
            b = self.region.band_of(freq)
            if b >= 0:
                t = self._later(self._band_free[b], t)
        return self._later(self._agg_free, t)

    def _later(self, end, t):
        # an off-time end still ahead of t; ends more than a day ahead are stale ticks that
        # wrapped around (ticks_ms wraps; no off-time is that long), so they count as over
        if end is None:
            return t
        d = self.clock.ticks_diff(end, t)
        return end if 0 < d <= _MAX_OFF_MS else t

    def _account(self, freq, toa_ms, tx_done, factor):
        clock = self.clock
        if self.region.uses_duty_cycle:
            b = self.region.band_of(freq)
            if b >= 0:
                dc = self.region.BANDS[b][2]  # 1/duty: off-time = ToA × (1/dc − 1)
                self._band_free[b] = clock.ticks_add(tx_done, toa_ms * (dc - 1))
        if factor > 1:
            self._agg_free = clock.ticks_add(tx_done, toa_ms * (factor - 1))

    def _pick_channel(self, dr, channels=None, s=None):
        """(channel, wait_ms): a random enabled channel for ``dr``, free now if one is."""
        region = self.region
        if s is None:
            s = self.state
        now = self.clock.ticks_ms()
        free = []
        best_wait = -1
        rng = range(region.channel_count()) if channels is None else channels
        for ch in rng:
            if not s.mask[ch >> 3] & (1 << (ch & 7)):
                continue
            if not region.channel_allows(s, ch, dr):
                continue
            wait = self.clock.ticks_diff(self._free_at(region.channel_freq(s, ch), now), now)
            if wait <= 0:
                free.append(ch)
            elif best_wait < 0 or wait < best_wait:
                best_wait = wait
        if free:
            return free[self._rng.randrange(len(free))], 0
        return -1, best_wait

    # ---------------------------------------------------------------- class C

    def _class_c(self):
        c = self._c
        if c is None:
            from lorawan.classc import ClassC  # loaded only by nodes that use class C

            c = self._c = ClassC(self)
        return c

    def _start_class_c(self):
        if self.state.flags & FLAG_CLASS_C:
            self._class_c().start()

    def _idle_radio(self):
        """After an uplink cycle: class C listens again, class A puts the radio to sleep."""
        if self.joined and self.state.flags & FLAG_CLASS_C:
            self._class_c().start()
        else:
            self.radio.sleep()

    async def _halt_class_c(self):
        """Stop continuous RX and wait until the radio is released (before any uplink)."""
        if self._c is not None:
            await self._c.halt()

    # ---------------------------------------------------------------- receive windows

    async def _listen(self, freq, dr, nominal):
        sf, bw = self.region.DR_TABLE[dr]
        offset, timeout, _ = rx_window(sf, bw)
        return await self.radio.receive(
            freq, sf, bw, self.clock.ticks_add(nominal, offset), timeout
        )

    async def _windows(self, s, tx_done, ch, dr, delay1, rx1_offset, handler):
        """RX1 then RX2 (L2 §3.3); RX2 is skipped once RX1 brought a valid frame."""
        rx2_freq = s.rx2_freq
        rx2_dr = s.rx2_dr
        freq1, dr1 = self.region.rx1(s, ch, dr, rx1_offset)
        rx = await self._listen(freq1, dr1, self.clock.ticks_add(tx_done, delay1))
        if rx is not None:
            got = handler(rx)
            if got is not None:
                return got
        rx = await self._listen(
            rx2_freq, rx2_dr, self.clock.ticks_add(tx_done, delay1 + _RECEIVE_DELAY2_EXTRA_MS)
        )
        if rx is not None:
            return handler(rx)
        return None

    # ---------------------------------------------------------------- join

    async def join(self, max_attempts=8):
        """OTAA join (L2 §6.2); retries are spaced by the L2 §7 back-off plus random jitter."""
        if self._app_key is None or self._dev_eui is None or self._join_eui is None:
            from lorawan.join import JoinResult

            return self._done(JoinResult(st.NO_KEYS))
        if self._busy:
            from lorawan.join import JoinResult

            return JoinResult(st.BUSY)
        self._busy = True
        try:
            await self._halt_class_c()
            from lorawan import join as otaa  # loaded on first join only

            result = await otaa.run(self, max_attempts)
        finally:
            self._busy = False
            self._idle_radio()
        return self._done(result)

    def _done(self, result):
        self.status.last = result.status
        return result

    # ---------------------------------------------------------------- uplink

    def build_uplink(self, fport, payload, plen, confirmed, fopts_len):
        """Frame into the preallocated buffer with the current FCnt; returns its length.

        The hot path the benchmark measures: no allocation (struct.pack_into, in-place AES).
        """
        s = self.state
        fctrl = 0
        if s.flags & FLAG_ADR:
            fctrl |= frame.F_ADR
            if s.adr_ack_cnt >= _ADR_ACK_LIMIT:
                fctrl |= frame.F_ADR_ACK_REQ  # L2 §4.3.1.1
        if s.flags & FLAG_ACK_PENDING:
            fctrl |= frame.F_ACK
        mtype = frame.CONFIRMED_UP if confirmed else frame.UNCONFIRMED_UP
        return frame.build_data(
            self._buf, mtype, s.dev_addr, fctrl, s.fcnt_up, self._fopts, fopts_len, fport,
            payload, plen, self._keys,
        )  # fmt: skip

    def _collect_fopts(self, room):
        """MAC answers and requests for this uplink, within ``room`` bytes; returns the length.

        Whole commands only, in priority order: the sticky answers (RXParamSetupAns,
        DlChannelAns, RXTimingSetupAns: the network cannot reach the device on changed RX
        settings until it has them, L2 1.0.4 §5.4, §5.6, §5.7), then the answers owed once in
        the order the requests came, then LinkCheckReq and DeviceTimeReq. A command that does
        not fit is never cut (L2 §4.3.1.6 has no fragments): it and every later answer wait
        for the next frame, and :meth:`_fopts_sent` drops only what this frame carried.
        """
        s = self.state
        out = self._fopts
        n = 0
        i = 0
        while i < s.sticky_len:  # repeated until a class A downlink: kept whether sent or not
            size = _ans_len(s.sticky[i])
            if n + size > room:
                break
            for k in range(size):
                out[n + k] = s.sticky[i + k]
            n += size
            i += size
        taken = 0
        while taken < self._answers_len:
            size = _ans_len(self._answers[taken])
            if n + size > room:
                break
            for k in range(size):
                out[n + k] = self._answers[taken + k]
            n += size
            taken += size
        self._taken = taken
        self._lc_sent = False
        self._dt_sent = False
        if self._want_link_check and n < room:
            out[n] = _LINK_CHECK
            n += 1
            self._lc_sent = True
        if self._want_device_time and n < room:
            out[n] = _DEVICE_TIME
            n += 1
            self._dt_sent = True
        return n

    def _fopts_sent(self):
        """Forget what the frame just built carries; answers that did not fit stay owed."""
        taken = self._taken
        left = self._answers_len - taken
        a = self._answers
        for i in range(left):
            a[i] = a[taken + i]
        self._answers_len = left
        self._taken = 0
        if self._lc_sent:
            self._want_link_check = False
        if self._dt_sent:
            self._want_device_time = False

    async def send(self, fport, payload, confirmed=False, max_wait_ms=0):
        """Send one uplink and return what came down in RX1/RX2 (L2 §3.3, §4.3.1.2).

        When every channel is in its duty-cycle off-time the uplink waits up to ``max_wait_ms``
        and otherwise returns status ``duty_cycle`` with ``retry_after_ms``.
        """
        if not self.joined:
            return self._done(st.SendResult(st.NOT_JOINED))
        if fport < 1 or fport > 223:
            return self._done(st.SendResult(st.BAD_PORT))
        if self._busy:
            return st.SendResult(st.BUSY)
        self._busy = True
        try:
            # class C keeps listening through a duty-cycle wait; _send halts it just before TX
            result = await self._send(fport, payload, confirmed, max_wait_ms)
        finally:
            self._busy = False
            self._idle_radio()
        return self._done(result)

    async def _send(self, fport, payload, confirmed, max_wait_ms):
        region = self.region
        s = self.state
        plen = len(payload)
        # M = FHDR (7 + FOptsLen) + FPort (1) + FRMPayload, so N = M - 8 with no FOpts (RP002-1.0.4
        # §5.1.6 / §5.2.6: 51 bytes at EU868 DR0, 242 at DR5) and what is left over is FOpts room
        room = region.max_payload(s.dr) - 8 - plen
        if room < 0:
            return st.SendResult(st.TOO_LONG)
        ch, wait = self._pick_channel(s.dr)
        while ch < 0 and 0 <= wait <= max_wait_ms:
            await self.clock.sleep_ms(wait)
            ch, wait = self._pick_channel(s.dr)
        if ch < 0:
            if wait >= 0:
                self.status.duty_cycle += 1
            r = st.SendResult(st.DUTY_CYCLE if wait >= 0 else st.NO_CHANNEL)
            r.retry_after_ms = wait if wait > 0 else 0
            return r
        # the radio is ours from here; a class C downlink heard while waiting for a free channel
        # set ACK pending already, so the frame built below acknowledges it (L2 §4.3.1.2)
        await self._halt_class_c()
        fopts_len = self._collect_fopts(room if room < _MAX_FOPTS else _MAX_FOPTS)
        fcnt = s.fcnt_up
        n = self.build_uplink(fport, payload, plen, confirmed, fopts_len)
        # state written before the frame leaves: a reset after TX never reuses this FCnt
        self._fopts_sent()
        s.flags &= ~FLAG_ACK_PENDING
        if s.flags & FLAG_ADR:
            s.adr_ack_cnt += 1
        self._persist_before_uplink(fcnt)
        result = st.SendResult(st.OK, fcnt)
        phy = memoryview(self._buf)[frame.B0 : frame.B0 + n]
        nb = s.nb_trans if s.nb_trans > 0 else 1
        got_downlink = False
        for attempt in range(nb):
            if attempt:
                ch, wait = self._pick_channel(s.dr)
                while ch < 0:
                    if wait < 0:
                        break
                    await self.clock.sleep_ms(wait)
                    ch, wait = self._pick_channel(s.dr)
                if ch < 0:
                    break
                self.status.tx_retransmissions += 1
            freq = region.channel_freq(s, ch)
            sf, bw = region.DR_TABLE[s.dr]
            tx_done = await self.radio.transmit(freq, sf, bw, region.tx_power_dbm(s.tx_power), phy)
            self._last_tx_done = tx_done
            self.status.tx_frames += 1
            result.transmissions += 1
            factor = (1 << s.max_dcycle) if s.max_dcycle else 1
            self._account(freq, time_on_air_ms(sf, bw, n), tx_done, factor)
            d = await self._windows(
                s, tx_done, ch, s.dr, s.rx_delay_s * 1000, s.rx1_dr_offset,
                self._class_a_handler,
            )  # fmt: skip
            if d is not None:
                got_downlink = True
                self._fill_result(result, d)
                if not confirmed or d.ack:
                    break  # an ACK, or any class A downlink, ends the repetitions (L2 §4.3.1.2)
            elif not confirmed:
                continue
            if confirmed and attempt + 1 < nb:
                await self.clock.sleep_ms(
                    _ACK_TIMEOUT_MIN_MS + self._rng.randrange(_ACK_TIMEOUT_SPAN_MS)
                )
        if confirmed and not result.ack:
            result.status = st.NO_ACK
            self.status.no_ack += 1
        if not got_downlink:
            self._adr_backoff()
        self._save_rtc()
        return result

    def _fill_result(self, result, d):
        if d.confirmed and self.state.flags & FLAG_ACK_PENDING:
            result.confirmed_downlink = True
        result.ack = result.ack or d.ack
        result.f_pending = d.f_pending
        if d.fport > 0:
            result.fport = d.fport
            result.payload = d.payload
        result.link_check = self._lc_this
        result.device_time = self._dt_this

    def _class_a_handler(self, rx):
        return self._accept_downlink(rx, True)

    def _adr_backoff(self):
        """ADR back-off when the network stays silent (L2 1.0.4 §4.3.1.1)."""
        s = self.state
        if not s.flags & FLAG_ADR or s.adr_ack_cnt < _ADR_ACK_LIMIT + _ADR_ACK_DELAY:
            return
        s.adr_ack_cnt = _ADR_ACK_LIMIT  # next step after ADR_ACK_DELAY more uplinks
        if s.tx_power != 0:
            s.tx_power = 0  # first back to full power
        elif s.dr > self.region.min_dr:
            s.dr -= 1
        else:
            self.region.all_on(s)  # lowest rate and still silent: all default channels back

    # ---------------------------------------------------------------- downlink

    def _accept_downlink(self, rx, class_a):
        """Verify, decrypt and apply one downlink; None (and a drop counted) when refused."""
        self._lc_this = None
        self._dt_this = None
        s = self.state
        try:
            d = frame.parse_data(
                rx.data, len(rx.data), s.dev_addr, s.fcnt_down, self._keys, self._work
            )
        except frame.FrameError as exc:
            if exc.reason == "dev_addr" and not class_a and self.multicast is not None:
                return self.multicast.accept(rx)  # a group's McAddr (TS004; lorawan.multicast)
            self.status.drop(exc.reason)
            return None
        except Exception:  # nothing from the air may raise out of the MAC
            self.status.drop("other")
            return None
        self.status.rx_frames += 1
        s.fcnt_down = d.fcnt
        s.adr_ack_cnt = 0  # any downlink resets the ADR counter (L2 §4.3.1.1)
        self.last_snr = rx.snr
        if class_a:
            s.sticky_len = 0  # sticky answers stop with a class A downlink (L2 §5)
        if d.confirmed:
            s.flags |= FLAG_ACK_PENDING  # ACK on the next uplink (L2 §4.3.1.2)
        changed = False
        try:
            if d.fopts:
                changed = self._mac_commands(d.fopts, rx)
            elif d.fport == 0:
                changed = self._mac_commands(d.payload, rx)
        except Exception:  # a malformed command list stops processing, never the MAC
            self.status.drop("mac_command")
        if changed:
            self._save_nvs()
        else:
            self._save_rtc()
        return d

    def _answer(self, cid, *values):
        n = self._answers_len
        if n + 1 + len(values) > _MAX_FOPTS:
            return
        self._answers[n] = cid
        for i, v in enumerate(values):
            self._answers[n + 1 + i] = v & 0xFF
        self._answers_len = n + 1 + len(values)

    def _sticky(self, cid, value=-1):
        """An answer repeated in every uplink until a class A downlink (L2 1.0.4 §5.4, §5.7)."""
        s = self.state
        size = 1 if value < 0 else 2
        if s.sticky_len + size <= _MAX_FOPTS:
            s.sticky[s.sticky_len] = cid
            if size == 2:
                s.sticky[s.sticky_len + 1] = value
            s.sticky_len += size

    def _mac_commands(self, cmds, rx):
        """Apply downlink MAC commands (L2 §5); returns True when a persistent setting changed.

        An unknown CID stops processing: its length is unknown (L2 §5).
        """
        region = self.region
        s = self.state
        changed = False
        i = 0
        n = len(cmds)
        while i < n:
            cid = cmds[i]
            if cid == _LINK_CHECK and i + 3 <= n:  # LinkCheckAns: Margin, GwCnt
                self.link_check = (cmds[i + 1], cmds[i + 2])
                self._lc_this = self.link_check
                i += 3
            elif cid == _LINK_ADR and i + 5 <= n:
                i = self._link_adr(cmds, i)
                changed = True
            elif cid == _DUTY_CYCLE and i + 2 <= n:
                s.max_dcycle = cmds[i + 1] & 0x0F
                self._answer(_DUTY_CYCLE)
                changed = True
                i += 2
            elif cid == _RX_PARAM_SETUP and i + 5 <= n:
                dl = cmds[i + 1]
                freq = (cmds[i + 2] | (cmds[i + 3] << 8) | (cmds[i + 4] << 16)) * 100
                off = (dl >> 4) & 0x07
                rx2 = dl & 0x0F
                ok = (
                    (4 if off <= region.max_rx1_offset else 0)
                    | (2 if region.valid_rx_dr(rx2) else 0)
                    | (1 if region.valid_freq(freq) else 0)
                )
                if ok == 7:
                    s.rx1_dr_offset = off
                    s.rx2_dr = rx2
                    s.rx2_freq = freq
                    changed = True
                self._sticky(_RX_PARAM_SETUP, ok)  # repeated until a class A downlink
                i += 5
            elif cid == _DEV_STATUS:
                batt = self._battery.level() if self._battery is not None else 255
                snr = int(rx.snr)
                snr = -32 if snr < -32 else (31 if snr > 31 else snr)
                self._answer(_DEV_STATUS, batt, snr & 0x3F)  # L2 §5.5: 6-bit signed margin
                i += 1
            elif cid == _NEW_CHANNEL and i + 6 <= n and region.has_cflist_freqs:
                ch = cmds[i + 1]
                freq = (cmds[i + 2] | (cmds[i + 3] << 8) | (cmds[i + 4] << 16)) * 100
                drr = cmds[i + 5]
                lo = drr & 0x0F
                hi = drr >> 4
                dr_ok = lo <= hi and region.valid_uplink_dr(hi) and region.valid_uplink_dr(lo)
                f_ok = freq == 0 or region.valid_freq(freq)
                if ch < 3 or ch >= region.max_channels:
                    dr_ok = f_ok = False  # the default channels cannot be changed (RP §5.1.2)
                if dr_ok and f_ok:
                    s.ch_freq[ch] = freq
                    s.ch_dr[ch] = drr
                    s.ch_dl[ch] = 0
                    if freq:
                        s.mask[ch >> 3] |= 1 << (ch & 7)
                    else:
                        s.mask[ch >> 3] &= ~(1 << (ch & 7)) & 0xFF
                    changed = True
                self._answer(_NEW_CHANNEL, (2 if dr_ok else 0) | (1 if f_ok else 0))
                i += 6
            elif cid == _RX_TIMING_SETUP and i + 2 <= n:
                s.rx_delay_s = (cmds[i + 1] & 0x0F) or 1
                self._sticky(_RX_TIMING_SETUP)
                changed = True
                i += 2
            elif cid == _DL_CHANNEL and i + 5 <= n and region.has_cflist_freqs:
                ch = cmds[i + 1]
                freq = (cmds[i + 2] | (cmds[i + 3] << 8) | (cmds[i + 4] << 16)) * 100
                up_ok = ch < region.max_channels and s.ch_freq[ch] != 0
                f_ok = region.valid_freq(freq)
                if up_ok and f_ok:
                    s.ch_dl[ch] = freq
                    changed = True
                self._sticky(_DL_CHANNEL, (2 if up_ok else 0) | (1 if f_ok else 0))
                i += 5
            elif cid == _DEVICE_TIME and i + 6 <= n:
                secs = cmds[i + 1] | (cmds[i + 2] << 8) | (cmds[i + 3] << 16) | (cmds[i + 4] << 24)
                self.device_time = (secs, cmds[i + 5], self._last_tx_done)
                self._dt_this = (secs, cmds[i + 5])
                i += 6
            else:
                break
        return changed

    def _link_adr(self, cmds, i):
        """A contiguous block of LinkADRReq, applied atomically (L2 1.0.4 §5.2)."""
        region = self.region
        s = self.state
        mask = bytearray(s.mask)
        n = len(cmds)
        count = 0
        mask_ok = True
        dr = s.dr
        power = s.tx_power
        nb = s.nb_trans
        while i + 5 <= n and cmds[i] == _LINK_ADR:
            dr_pw = cmds[i + 1]
            chmask = cmds[i + 2] | (cmds[i + 3] << 8)
            red = cmds[i + 4]
            if not region.apply_chmask(s, mask, (red >> 4) & 0x07, chmask):
                mask_ok = False
            dr = dr_pw >> 4
            power = dr_pw & 0x0F
            nb = red & 0x0F
            count += 1
            i += 5
        any_on = False
        for b in mask:
            if b:
                any_on = True
        mask_ok = mask_ok and any_on
        new_dr = s.dr if dr == 0x0F else dr  # 0xF: keep the current value (L2 1.0.4 §5.2)
        dr_ok = region.valid_uplink_dr(new_dr) and region.DR_TABLE[new_dr][0] != 0
        if dr_ok and mask_ok:
            dr_ok = False
            for ch in range(region.channel_count()):
                if mask[ch >> 3] & (1 << (ch & 7)) and region.channel_allows(s, ch, new_dr):
                    dr_ok = True
                    break
        new_power = s.tx_power if power == 0x0F else power
        power_ok = new_power <= region.max_tx_power
        status = (4 if power_ok else 0) | (2 if dr_ok else 0) | (1 if mask_ok else 0)
        if status == 7:
            for k in range(10):
                s.mask[k] = mask[k]
            s.dr = new_dr
            s.tx_power = new_power
            s.nb_trans = nb if nb else 1
        for _ in range(count):
            self._answer(_LINK_ADR, status)
        return i
