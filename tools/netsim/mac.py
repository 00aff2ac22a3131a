"""The network server's side of the MAC commands (L2 §5).

Uplink: LinkCheckReq → LinkCheckAns (§5.2: margin over the demodulation floor, gateway count),
DeviceTimeReq → DeviceTimeAns (§5.10), LinkADRAns settles the pending LinkADRReq (§5.3),
DevStatusAns becomes a ``status`` event (§5.5). Downlink (class A only; ChirpStack sends no MAC
commands in class C downlinks): the queued answers, a LinkADRReq from :mod:`tools.netsim.adr`,
and DevStatusReq on the first uplink after the join and then every ``dev_status_every``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from protocol.errors import ProtocolError
from protocol.lorawan.maccommands import (
    DeviceTimeAns,
    DeviceTimeReq,
    DevStatusAns,
    DevStatusReq,
    LinkADRAns,
    LinkADRReq,
    LinkCheckAns,
    LinkCheckReq,
    parse_mac_commands,
)
from tools.netsim import region
from tools.netsim.adr import adr_request
from tools.netsim.config import NetsimConfig
from tools.netsim.state import Collect, Session

__all__ = ["device_time_ans", "downlink_mac", "handle_uplink_mac"]

log = logging.getLogger("citypack.netsim")

_GPS_EPOCH = datetime(1980, 1, 6, tzinfo=UTC)
_GPS_LEAP_SECONDS = 18  # GPS - UTC since 2017-01-01 (IERS Bulletin C)


def device_time_ans(now: datetime) -> DeviceTimeAns:
    """DeviceTimeAns for an uplink received at ``now`` (L2 §5.10: GPS seconds + 1/256 s)."""
    since = (now - _GPS_EPOCH).total_seconds() + _GPS_LEAP_SECONDS
    seconds = int(since)
    return DeviceTimeAns(seconds & 0xFFFFFFFF, int((since - seconds) * 256) & 0xFF)


def handle_uplink_mac(
    session: Session,
    raw: bytes,
    collect: Collect,
    now: datetime,
    config: NetsimConfig,
    dev_eui: str,
) -> tuple[bool, list[DevStatusAns]]:
    """Process uplink MAC commands into ``session``; queue answers there.

    Returns (a downlink must go, the DevStatusAns received: the caller publishes ``status``).
    """
    must_send = False
    statuses: list[DevStatusAns] = []
    try:
        commands = parse_mac_commands(raw, uplink=True, strict=False)
    except ProtocolError as exc:
        log.warning("netsim: %s: undecodable MAC commands: %s", dev_eui, exc)
        commands = []
    if session.pending_link_adr is not None and not any(
        isinstance(c, LinkADRAns) for c in commands
    ):
        # No answer in the uplink after the request: it was lost or ignored. Clear it (as
        # ChirpStack clears unanswered pending MAC commands) and wait a history's worth of
        # uplinks before asking again, so a device that ignores ADR is not asked every time.
        session.pending_link_adr = None
        session.adr_quiet_until = session.uplinks + config.adr_history
    for command in commands:
        if isinstance(command, LinkCheckReq):
            dr = region.dr_of(collect.datr)
            margin = max(c.snr for c in collect.copies) - region.required_snr(dr)
            answer = LinkCheckAns(max(0, min(254, int(margin))), min(len(collect.copies), 255))
            session.mac_answers.append(answer.to_bytes())
            must_send = True
        elif isinstance(command, DeviceTimeReq):
            session.mac_answers.append(device_time_ans(now).to_bytes())
            must_send = True
        elif isinstance(command, LinkADRAns):
            requested = session.pending_link_adr
            session.pending_link_adr = None
            ok = command.power_ack and command.data_rate_ack and command.channel_mask_ack
            if requested is not None and ok:
                session.dr, session.tx_power_index, session.nb_trans = requested
                session.history.clear()
            elif requested is not None:  # refused (e.g. a channel mask it cannot use)
                session.adr_quiet_until = session.uplinks + config.adr_history
        elif isinstance(command, DevStatusAns):
            statuses.append(command)
    return must_send, statuses


def downlink_mac(
    session: Session, config: NetsimConfig
) -> tuple[list[bytes], tuple[int, int, int] | None]:
    """The MAC commands of a class A downlink (answers taken from the session) and the
    LinkADRReq parameters they include, if any (pending once the gateway acknowledges TX)."""
    commands = list(session.mac_answers)
    session.mac_answers = []
    link_adr = adr_request(session, config)
    if link_adr is not None:
        dr, tx_power, nb_trans = link_adr
        # ChMask 0x00FF: the three default channels plus the five CFList ones.
        commands.append(LinkADRReq(dr, tx_power, 0x00FF, 0, nb_trans).to_bytes())
    every = config.dev_status_every
    if every > 0 and (session.uplinks - 1) % every == 0:
        commands.append(DevStatusReq().to_bytes())
    return commands, link_adr
