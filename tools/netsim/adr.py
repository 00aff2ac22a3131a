"""ChirpStack's default ADR algorithm (chirpstack ``src/adr/default.rs``; L2 §4.3.1.1, §5.3).

The margin is the best SNR of the last ``adr_history`` uplinks minus the demodulation floor of
the data rate minus the installation margin (10 dB); each 3 dB step raises the DR up to the
region's maximum, then lowers the TX power; a negative margin raises the power again (only once
the history is full). NbTrans follows the packet-loss rate of the history (ChirpStack's table).
"""

from __future__ import annotations

from tools.netsim import region
from tools.netsim.config import NetsimConfig
from tools.netsim.state import Session

__all__ = ["adr_request", "nb_trans"]

_PLR_TABLE = ((1, 1, 2), (1, 2, 3), (2, 3, 3), (3, 3, 3))  # chirpstack src/adr/default.rs


def nb_trans(session: Session) -> int:
    """NbTrans from the packet-loss rate of the uplink history (ChirpStack's table)."""
    history = list(session.history)
    if len(history) < 2:
        return session.nb_trans
    expected = history[-1][0] - history[0][0] + 1
    lost = max(expected - len(history), 0)
    loss = 100.0 * lost / expected
    row = 0 if loss < 5 else 1 if loss < 10 else 2 if loss < 30 else 3
    return _PLR_TABLE[row][min(max(session.nb_trans, 1), 3) - 1]


def adr_request(session: Session, config: NetsimConfig) -> tuple[int, int, int] | None:
    """The new (dr, tx power index, nb_trans) to request, or None when nothing changes."""
    if not (config.adr_enabled and session.adr) or not session.history:
        return None
    if session.pending_link_adr is not None or session.uplinks < session.adr_quiet_until:
        return None
    dr = min(session.dr, region.MAX_DR)
    tx_power = session.tx_power_index
    wanted_nb_trans = nb_trans(session)
    max_snr = max(snr for _, snr, _ in session.history)
    margin = max_snr - region.required_snr(dr) - config.installation_margin_db
    steps = int(margin / 3)
    if steps < 0 and len(session.history) < config.adr_history:
        steps = 0
    while steps > 0:
        if dr < region.MAX_DR:
            dr += 1
        elif tx_power < region.MAX_TX_POWER_INDEX:
            tx_power += 1
        else:
            break
        steps -= 1
    while steps < 0 and tx_power > 0:
        tx_power -= 1
        steps += 1
    wanted = (dr, tx_power, wanted_nb_trans)
    if wanted == (session.dr, session.tx_power_index, session.nb_trans):
        return None
    return wanted
