"""Instance attributes of the app objects, and the sizes of MicroPython's attribute tables.

``attributes.py`` runs every app scenario of scenarios.py (the fake network ones and a day on
the real MAC) and prints one JSON line: per app class the most instance attributes an app object
had at the end of a scenario, when its start-up, join, downlinks and reboots have all run, and
where this port reallocates an instance's table (table_growth). A module of its own, so the
bench's harness (scenarios.py, whose bytecode counts in the bench's heap size) stays as it is.
Assertions live in tests/firmware_apps/test_attribute_tables.py."""

import json
import sys

import scenarios
import world


def table_growth(limit=64):
    """[attribute count, table bytes] each time MicroPython reallocates an instance's attribute
    table as attributes are added one by one (GC off, names interned beforehand). None without
    a MicroPython heap."""
    import gc

    if not hasattr(gc, "mem_alloc"):
        return None

    class Probe:
        pass

    names = ["a%d" % i for i in range(limit)]
    warm = Probe()
    for each in names:
        setattr(warm, each, 0)  # interns the names: the loop below allocates only tables
    probe = Probe()
    at = [0] * limit  # filled in place with small ints: the loop itself allocates nothing
    size = [0] * limit
    gc.collect()
    gc.disable()
    base = last = gc.mem_alloc()
    n = 0
    k = 0
    while n < limit:
        setattr(probe, names[n], 0)
        n += 1
        now = gc.mem_alloc()
        if now != last:
            at[k] = n
            size[k] = now - base  # the old table is freed by the reallocation
            k += 1
        last = now
    gc.enable()
    return [[at[i], size[i]] for i in range(k)]


def _count(worlds, scenario, out):
    for w in worlds:
        app = w["app"]  # bin_power_loss puts the app it rebuilt here
        kind = type(app).__name__
        n = len(app.__dict__)
        if n > out.get(kind, {}).get("count", -1):
            out[kind] = {"count": n, "scenario": scenario, "names": sorted(app.__dict__)}


def main():
    worlds = []

    def keep(make):
        def made(*args, **kwargs):
            w = make(*args, **kwargs)
            worlds.append(w)
            return w

        return made

    scenarios.make_bin = keep(scenarios.make_bin)  # what every scenario builds its world with
    scenarios.make_lamp = keep(scenarios.make_lamp)
    apps = {}
    for name, scenario in scenarios.SCENARIOS.items():
        if name == "report_alloc":  # builds apps but never runs them
            continue
        world.CLOCK = world.VirtualClock()
        world.CLOCK.run(scenario(1) if name.startswith("mac_") else scenario())
        _count(worlds, name, apps)
        worlds.clear()
    world.CLOCK = None
    json.dump({"apps": apps, "table_growth": table_growth()}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
