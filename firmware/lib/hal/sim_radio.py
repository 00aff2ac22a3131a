"""Simulated radio for the host: frames go to a network model instead of the air.

The node side is :class:`SimRadio` (the radio HAL, see :mod:`hal.radio`). It talks to a *link*,
which is either an in-process channel object (fleet simulator, one CPython process) or
:class:`hal.sim_udp.UdpLink` (a MicroPython process talking to a CPython network on 127.0.0.1).

In-process channel — what the network emulator / fleet simulator implements::

    channel.attach(node_id, radio)        # optional; SimRadio calls it when the method exists
    channel.uplink(node_id, phy, freq_hz, datr, t_ms)
        # called at TX done: phy is bytes, datr e.g. "SF7BW125", t_ms the node's clock at TX
        # done (virtual ms when both run on one VirtualClock). RX1 is due at t_ms + RX delay.
    radio.deliver(phy, freq_hz, datr, t_ms, rssi=-60, snr=8)
        # the network puts a downlink on the air starting at t_ms (its preamble starts then).
        # The radio hands it to the MAC if a receive window is open at that time on that
        # frequency and data rate (class A: RX1/RX2; class C: continuous RX2); otherwise it is
        # lost, like on the air. deliver() may be called from uplink() (class A answers) or
        # from any task at any time (class C).

UDP link (:class:`hal.sim_udp.UdpLink`) — one JSON object per datagram, node → network::

    {"type": "uplink", "node_id", "phy": hex, "freq_hz", "datr", "t_ms"}
    {"type": "poll", "node_id", "t_ms"}          # while listening (class C), every poll_ms
network → node, exactly one reply to each datagram::

    {"type": "downlinks", "items": [{"phy": hex, "freq_hz", "datr", "t_ms"[, "rssi", "snr"]}]}

The exchange is synchronous (blocking socket with a timeout), which keeps virtual time from
running ahead of the network process.
"""

from hal.radio import RxFrame, symbol_us, time_on_air_ms
from hal.radio import datr as make_datr

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


_PREAMBLE_X4 = const(49)  # 8 + 4.25 symbols, times 4
_INBOX_MAX = const(8)  # frames waiting on the air for this node (bounded)


class SimRadio:
    """Radio HAL over a sim link; counts ``missed`` downlinks that found no open window."""

    def __init__(self, clock, link, node_id):
        self._clock = clock
        self._link = link
        self.node_id = node_id
        self._inbox = []  # [t_ms, freq_hz, datr, phy, rssi, snr]
        self._alarm = clock.alarm()
        self.missed = 0
        self.tx_count = 0
        self.listening = False
        if hasattr(link, "attach"):
            link.attach(node_id, self)

    def configure(self):
        pass

    def sleep(self):
        pass

    async def transmit(self, freq_hz, sf, bw_khz, power_dbm, payload):
        await self._clock.sleep_ms(time_on_air_ms(sf, bw_khz, len(payload), True))
        tx_done = self._clock.ticks_ms()
        self.tx_count += 1
        self._link.uplink(self.node_id, bytes(payload), freq_hz, make_datr(sf, bw_khz), tx_done)
        return tx_done

    def deliver(self, phy, freq_hz, datr, t_ms, rssi=-60, snr=8):
        if len(self._inbox) >= _INBOX_MAX:
            self._inbox.pop(0)
            self.missed += 1
        self._inbox.append([t_ms, freq_hz, datr, bytes(phy), rssi, snr])
        self._alarm.fire()

    def _take(self, freq_hz, datr, open_t, close_t, preamble_ms, now):
        """Pop the earliest frame this window can catch; drop frames whose chance has passed."""
        best = -1
        i = 0
        inbox = self._inbox
        while i < len(inbox):
            t, f, d = inbox[i][0], inbox[i][1], inbox[i][2]
            # caught when its preamble is still on the air at open and it starts before close
            if f == freq_hz and d == datr and t + preamble_ms >= open_t:
                if close_t is None or t <= close_t:
                    if best < 0 or t < inbox[best][0]:
                        best = i
                    i += 1
                    continue
            if t + preamble_ms < now:
                inbox.pop(i)  # no window was open for it: lost, as on the air
                self.missed += 1
                continue
            i += 1
        if best < 0:
            return None
        return inbox.pop(best)

    async def receive(self, freq_hz, sf, bw_khz, open_ticks, timeout_ms):
        clock = self._clock
        await clock.sleep_until(open_ticks)
        datr = make_datr(sf, bw_khz)
        preamble_ms = (_PREAMBLE_X4 * symbol_us(sf, bw_khz)) // 4000
        close_t = None if timeout_ms is None else open_ticks + timeout_ms
        poll_ms = getattr(self._link, "poll_ms", None)
        self.listening = True
        try:
            while True:
                now = clock.ticks_ms()
                if poll_ms is not None:
                    self._link.poll(self.node_id, now)
                hit = self._take(freq_hz, datr, open_ticks, close_t, preamble_ms, now)
                if hit is not None:
                    t, _, _, phy, rssi, snr = hit
                    # a frame is received to its end once its preamble was caught
                    await clock.sleep_until(t + time_on_air_ms(sf, bw_khz, len(phy), False))
                    return RxFrame(phy, rssi, snr, clock.ticks_ms())
                if close_t is not None and now >= close_t:
                    return None
                wait = None if close_t is None else close_t - now
                if poll_ms is not None and (wait is None or wait > poll_ms):
                    wait = poll_ms
                await self._alarm.wait(wait)
        finally:
            self.listening = False
