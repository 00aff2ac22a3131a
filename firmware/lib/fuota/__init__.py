"""FUOTA for citypack nodes: TS003 clock sync, TS004 multicast setup, TS005 fragmentation, update.

Optional packages on top of the MAC (lorawan/ runs without them). :class:`fuota.agent.Agent` ties
them to a node: it answers fPorts 200-202, keeps the multicast groups the MAC listens to
(lorawan.multicast), stores fragments in flash, and applies a complete, signed bundle
(fuota.bundle, fuota.update, fwslot).
"""
