"""Regional parameters for the firmware: EU868 and US915 (LoRaWAN RP002-1.0.4).

Each region is a module (:mod:`lorawan.eu868`, :mod:`lorawan.us915`) with the same names:
``DR_TABLE`` (SF, BW kHz per DR), ``MAX_M``, ``BANDS``, ``default_plan()``, ``rx1()``,
``apply_chmask()``, ``apply_cflist()`` ... :func:`get` imports only the one a node uses, so a
board does not carry the other region's code in its heap.

A region is stateless; the channel plan a device uses lives in :class:`lorawan.session.State`
(``ch_freq``, ``ch_dr``, ``ch_dl``, ``mask``).
"""


def get(name):
    if name == "EU868":
        from lorawan import eu868

        return eu868
    if name == "US915":
        from lorawan import us915

        return us915
    raise ValueError("unsupported region")
