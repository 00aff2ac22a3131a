"""The demo's view (issue 20): names stay distinct when narrow, commands fold into counts,
the counters reconcile, the screen has no colliding headers and no rich-markup accidents."""

from __future__ import annotations

import io

from rich.console import Console

from tools.sim.view import (
    CityState,
    NodeRow,
    View,
    reconciliation,
    reconciliation_lines,
    render,
    short_name,
)


def _city() -> CityState:
    state = CityState(speed=60, sim_time=1_800_000_000.0)
    for i in range(1, 6):
        eui = f"02c17a0c{i:08x}"
        state.nodes[eui] = NodeRow(eui, "lamp", f"lamp-jaegergaardsgade-{i:02d}", "J", 100.0)
        state.nodes[eui].mode = ("schedule", "presence_boost", "override")[i % 3]
        beui = f"02c17a0b{i:08x}"
        state.nodes[beui] = NodeRow(beui, "bin", f"bin-jaegergaardsgade-{i:02d}", "J", 20.0 * i)
    return state


def test_short_names_keep_their_number() -> None:
    names = [short_name(f"jaegergaardsgade-{i:02d}", 12) for i in range(1, 6)]
    assert len(set(names)) == 5 and all(len(n) <= 12 for n in names)
    assert names[0] == "jaegerga…-01"
    assert short_name("mejlgade-03", 12) == "mejlgade-03"


def test_commands_fold_into_counts_and_only_failures_are_told() -> None:
    state = _city()
    told: list[str] = []
    state.sinks.append(told.append)
    lamp = next(iter(state.nodes))
    for n in range(3):
        state.command(f"c{n}", lamp, "lamp_override", "queued")
        state.command(f"c{n}", lamp, "", "sent")
    state.command("c0", lamp, "", "applied")
    state.command("c1", lamp, "", "failed", "not acknowledged by the device (nack)")
    state.command("c1", lamp, "", "failed")  # repeated: nothing changes
    assert state.command_counts == {
        "lamp_override": {"queued": 0, "sent": 1, "applied": 1, "failed": 1}
    }
    assert len(told) == 1 and "lamp_override to lamp-jaegergaardsgade-01 failed: not ack" in told[0]


def test_reconciliation_adds_up_and_leaves_out_what_is_not_running() -> None:
    counters = {
        "uplinks_on_air": 100,
        "uplinks_heard": 97,
        "uplinks_lost_on_air": 3,
        "network_frames": 97,
        "network_joins": 7,
        "network_dropped": 1,
        "uplinks_published": 89,
        "gateway_uplinks_processed": 80,
        "gateway_uplinks_duplicate": 2,
    }
    rec = reconciliation(counters)
    assert rec["network"]["data_uplinks"] == 89
    assert rec["gateway"]["in_flight"] == 7
    lines = reconciliation_lines(counters)
    assert lines[0] == "uplinks sent 100 = heard 97 + lost 3"
    assert lines[2].endswith("duplicates 2 + unusable 0 + in flight 7")
    assert reconciliation({"uplinks_on_air": 5}).keys() == {"air"}  # no network, no gateway


def test_screen_at_100_by_30() -> None:
    state = _city()
    state.event("ALARM fire in bin-jaegergaardsgade-05 (92 °C)")
    state.command("x", next(iter(state.nodes)), "lamp_override", "applied")
    out = io.StringIO()
    console = Console(file=out, width=100, height=30, color_system=None)
    console.print(render(state, width=100, height=30))
    text = out.getvalue()
    assert len(text.splitlines()) <= 30
    header = next(line for line in text.splitlines() if line.startswith("bin "))
    words = header.split()
    assert words[:5] == ["bin", "fill", "world", "gw", "alarm"]
    assert words[5:] == ["lamp", "level", "world", "gw", "why"]
    for i in range(1, 6):
        assert f"-{i:02d}" in text
    assert "[sim " in text  # the event's time stamp is text, not a rich tag
    assert "neighbour" in text and "presence" in text and "profile" in text


def test_plain_summary_tells_the_story() -> None:
    state = _city()
    state.counters["truck_bins_emptied"] = 2
    out = io.StringIO()
    lines = View(state, stream=out).summary_lines()
    text = "\n".join(lines)
    assert "bins: 2 full, 1 over half, 2 below; emptied by the truck 2" in text
    assert "lamps: 5/5 lit (5×100%; why:" in text
    assert "commands: none yet" in text
