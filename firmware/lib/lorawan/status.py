"""Why something failed: the MAC's counters and results.

``Status`` counts everything the MAC drops or refuses, by reason, so an app or a test can tell
a lost join-accept (``no_join_accept``) from a duty-cycle wait (``duty_cycle``) or a forged
downlink (``drops["mic_fail"]``). :class:`SendResult` is what :meth:`lorawan.mac.Mac.send` returns
(``join()`` returns :class:`lorawan.join.JoinResult`, kept with the join code).

Drop reasons (frames from the air, never raised): ``short`` (length or FOptsLen), ``mtype``,
``dev_addr``, ``replay`` (FCnt not ahead), ``mic_fail``, ``fopts_port0`` (MAC commands in FOpts and
FPort 0 at once), ``join_nonce`` (Join-Accept JoinNonce not above the last one), ``other``.
"""

# result statuses
OK = "ok"  # sent (and acknowledged, for confirmed uplinks)
JOINED = "joined"
NO_JOIN_ACCEPT = "no_join_accept"  # every attempt's RX1 and RX2 stayed empty or invalid
NO_ACK = "no_ack"  # confirmed uplink: NbTrans transmissions, no ACK
DUTY_CYCLE = "duty_cycle"  # no channel may transmit now; see retry_after_ms
NOT_JOINED = "not_joined"
TOO_LONG = "too_long"  # payload over the DR's maximum (RP002 M)
BAD_PORT = "bad_port"  # FPort outside 1..223
BUSY = "busy"  # another join/send is running
NO_CHANNEL = "no_channel"  # no enabled channel allows the current DR
NONCES_EXHAUSTED = "dev_nonce_exhausted"  # 65536 joins done (L2 1.0.4 §6.2.5)
NO_KEYS = "no_keys"  # OTAA without AppKey/EUIs


class Status:
    def __init__(self):
        self.last = "idle"  # result status of the last join/send
        self.tx_frames = 0  # transmissions, including retransmissions
        self.tx_retransmissions = 0
        self.rx_frames = 0  # downlinks accepted (MIC, address and FCnt checked)
        self.join_attempts = 0
        self.joins = 0
        self.no_join_accept = 0
        self.no_ack = 0
        self.duty_cycle = 0  # sends refused because every channel was in its off-time
        self.class_c_downlinks = 0
        self.drops = {}

    def drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def dropped(self):
        n = 0
        for v in self.drops.values():
            n += v
        return n

    def as_dict(self):
        out = dict(self.__dict__)
        out["drops"] = dict(self.drops)
        return out


class SendResult:
    """What one ``send()`` did and what came down in its receive windows."""

    def __init__(self, status, fcnt=-1):
        self.status = status
        self.fcnt = fcnt  # FCnt used, -1 when nothing was sent
        self.ack = False  # the network acknowledged this confirmed uplink
        self.fport = None  # downlink FPort (1..223) when application data came down
        self.payload = None  # decrypted downlink payload
        self.confirmed_downlink = False  # it will be acknowledged on the next uplink
        self.f_pending = False  # the network has more: send again soon (L2 §4.3.1.4)
        self.transmissions = 0
        self.retry_after_ms = 0  # DUTY_CYCLE: earliest time a channel is free
        self.link_check = None  # (margin dB, gateway count) when a LinkCheckAns came
        self.device_time = None  # (GPS seconds, fraction 1/256 s) when a DeviceTimeAns came

    @property
    def ok(self):
        return self.status == OK
