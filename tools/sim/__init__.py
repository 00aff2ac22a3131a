"""The fleet simulator: the real firmware of bins and lamps in a simulated Aarhus.

- :mod:`tools.sim.world` — streets, bins, lamps, road users, the truck, the sun;
- :mod:`tools.sim.radio` — simulated gateways and the log-distance link model;
- :mod:`tools.sim.air` — the in-process channel of ``hal.sim_radio`` over that model;
- :mod:`tools.sim.network` — backhauls: the emulator's in-process path, GWMP over UDP;
- :mod:`tools.sim.fleet` — the firmware nodes (apps + MAC) and their simulated boards
  (:mod:`tools.sim.boards`) on one clock (:mod:`tools.sim.clock`);
- :mod:`tools.sim.city` — inventory and secrets files, gateway registry entries;
- :mod:`tools.sim.gatewayproc`, :mod:`tools.sim.broker`, :mod:`tools.sim.watch`,
  :mod:`tools.sim.view` — what ``citypack demo`` (:mod:`tools.demo`) runs and shows;
- :mod:`tools.sim.runner` — ``citypack sim``.

See tools/sim/README.md.
"""
