"""What the demo shows: a live terminal view (rich) or plain lines when stdout is not a terminal.

:class:`CityState` collects what happens from every source the demo has: the simulated world
(truth: fill levels, lamp levels and the lamp apps' own modes), the ChirpStack-shaped MQTT traffic
(uplinks published, command/down) and the gateway's normalised topics
(``citypack/devices/+/state``, ``citypack/events/+``, command states included). The view draws
it; it never invents a figure, and a value whose source is not running shows "-".

The story comes first: bins filling and emptied, alarms, lamps by level and why (their profile,
their own presence sensor, or a neighbour's boost through the gateway). Commands, presence reports
and joins are many and alike, so they are folded into counts (commands per kind and state, with a
legend) instead of one line each; only a failed or expired command is told on its own.

The uplink counters reconcile, left to right: every uplink a node sent was heard by a gateway or
lost on the air; every frame the network server got was a join request, a data uplink it
published to MQTT, or dropped; every published uplink was processed by the citypack gateway, was
a duplicate, could not be used, or is still in flight (:func:`reconciliation`).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

# the gateway's command states in lifecycle order (gateway/commands.py), as table columns
COMMAND_STATES = (
    "queued",
    "sent",
    "acknowledged",
    "applied",
    "failed",
    "expired",
    "replaced",
    "cancelled",
)
COMMAND_LEGEND = (
    "queued: in the gateway's or ChirpStack's queue · sent: on the air · acknowledged: its "
    "radio confirmed · applied: the node did it · replaced: a newer one went instead"
)
# why a lamp shows its level: the lamp app's own mode (firmware/apps/lamp_node.py)
LAMP_WHY = {
    "schedule": "profile",
    "presence_boost": "presence",
    "override": "neighbour",
    "off": "off",
}
LAMP_LEGEND = (
    "why: profile (its night program), presence (its own sensor), neighbour (lit by the "
    "gateway ahead of someone a neighbour saw)"
)
VALUE_LEGEND = "world: the simulated truth · gw: what the gateway last heard"
_MAX_COMMANDS = 50_000  # commands remembered for the counts (a demo sends a few per second)


@dataclass(slots=True)
class NodeRow:
    dev_eui: str
    kind: str  # "bin" | "lamp"
    name: str
    street: str
    world_value: float | None = None  # fill % (bins) or dimmer level % (lamps) in the world
    reported_value: float | None = None  # what the gateway's twin says
    mode: str = ""  # lamps: the app's own mode (truth from the fleet), else the reported one
    joined: bool = False
    uplinks: int = 0
    last_uplink: float | None = None
    alarm: str = ""


@dataclass
class CityState:
    """Everything the view draws, updated by the demo's tasks."""

    title: str = "citypack demo"
    api_url: str = ""
    token_file: str = ""
    broker_url: str = ""
    capture_file: str = ""
    speed: float = 1.0
    sim_time: float = 0.0
    dark: bool = False
    components: dict[str, str] = field(default_factory=dict)  # name -> "running" / why not
    nodes: dict[str, NodeRow] = field(default_factory=dict)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=14))
    counters: dict[str, float] = field(default_factory=dict)
    # message -> state -> how many commands of that kind are in that state now
    command_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    _command_states: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> msg, state
    sinks: list[Callable[[str], None]] = field(default_factory=list)  # each story line

    def count(self, name: str, by: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def stamp(self) -> str:
        return time.strftime("%H:%M:%S", time.gmtime(self.sim_time)) if self.sim_time else "--"

    def event(self, text: str) -> None:
        line = f"[sim {self.stamp()}] {text}"
        self.events.append(line)
        for sink in self.sinks:
            sink(line)

    def command(
        self, command_id: str, dev_eui: str, message: str, state: str, error: str = ""
    ) -> None:
        """The gateway says command ``command_id`` is now in ``state`` (its ``command_*``
        events); counted per kind and state, told only when it failed or expired."""
        old = self._command_states.get(command_id)
        if old is not None:
            message = message or old[0]
            if old == (message, state):
                return
            per_kind = self.command_counts.setdefault(old[0], {})
            per_kind[old[1]] = per_kind.get(old[1], 0) - 1
        elif len(self._command_states) >= _MAX_COMMANDS:
            self._command_states.pop(next(iter(self._command_states)))  # oldest; counts stay
        message = message or "?"
        self._command_states[command_id] = (message, state)
        per_kind = self.command_counts.setdefault(message, {})
        per_kind[state] = per_kind.get(state, 0) + 1
        if state in ("failed", "expired"):
            why = f": {error}" if error else ""
            self.event(f"command {message} to {self.name_of(dev_eui)} {state}{why}")

    def name_of(self, dev_eui: str) -> str:
        row = self.nodes.get(dev_eui)
        return row.name if row else dev_eui


def short_name(name: str, width: int) -> str:
    """``name`` in ``width`` characters, keeping its number: at 100 columns five lamps of one
    long street must still read as five different lamps (``jaegergaa…-05``)."""
    if len(name) <= width:
        return name
    head, sep, number = name.rpartition("-")
    if sep and number.isdigit() and width > len(number) + 2:
        return head[: width - len(number) - 2] + "…-" + number
    return name[: max(1, width - 1)] + "…"


def reconciliation(c: dict[str, float]) -> dict[str, Any]:
    """The uplink counters as three sums that must add up (module doc); a part whose source is
    not running is left out, never filled in."""
    out: dict[str, Any] = {}
    if "uplinks_on_air" in c:
        out["air"] = {
            "sent": c["uplinks_on_air"],
            "heard": c.get("uplinks_heard", 0),
            "lost": c.get("uplinks_lost_on_air", 0),
        }
    if "network_frames" in c:
        joins = c.get("network_joins", 0)
        dropped = c.get("network_dropped", 0)
        out["network"] = {
            "frames": c["network_frames"],
            "join_requests": joins,
            "dropped": dropped,
            "data_uplinks": c["network_frames"] - joins - dropped,
        }
    if "uplinks_published" in c and "gateway_uplinks_processed" in c:
        used = sum(
            c.get(f"gateway_uplinks_{k}", 0)
            for k in ("processed", "duplicate", "undecodable", "invalid_event")
        )
        out["gateway"] = {
            "published": c["uplinks_published"],
            "processed": c.get("gateway_uplinks_processed", 0),
            "duplicate": c.get("gateway_uplinks_duplicate", 0),
            "undecodable": c.get("gateway_uplinks_undecodable", 0),
            "invalid_event": c.get("gateway_uplinks_invalid_event", 0),
            "in_flight": c["uplinks_published"] - used,
        }
    return out


def reconciliation_lines(c: dict[str, float]) -> list[str]:
    r = reconciliation(c)
    lines = []
    if "air" in r:
        a = r["air"]
        lines.append(f"uplinks sent {a['sent']:g} = heard {a['heard']:g} + lost {a['lost']:g}")
    if "network" in r:
        n = r["network"]
        lines.append(
            f"network got {n['frames']:g} = {n['join_requests']:g} joins + "
            f"{n['data_uplinks']:g} data uplinks + {n['dropped']:g} dropped"
        )
    if "gateway" in r:
        g = r["gateway"]
        bad = g["undecodable"] + g["invalid_event"]
        lines.append(
            f"published {g['published']:g} = gateway processed {g['processed']:g} + "
            f"duplicates {g['duplicate']:g} + unusable {bad:g} + in flight {g['in_flight']:g}"
        )
    return lines


def lamp_story(state: CityState) -> str:
    lamps = [r for r in state.nodes.values() if r.kind == "lamp"]
    if not lamps:
        return ""
    lit = [r for r in lamps if (r.world_value or 0) > 0]
    why: dict[str, int] = {}
    for row in lit:
        reason = LAMP_WHY.get(row.mode, row.mode or "?")
        why[reason] = why.get(reason, 0) + 1
    levels: dict[int, int] = {}
    for row in lit:
        level = round(row.world_value or 0)
        levels[level] = levels.get(level, 0) + 1
    reasons = ", ".join(f"{n} {k}" for k, n in sorted(why.items(), key=lambda kv: -kv[1]))
    shown = ", ".join(f"{n}×{level}%" for level, n in sorted(levels.items(), reverse=True))
    text = f"lamps: {len(lit)}/{len(lamps)} lit"
    if lit:
        text += f" ({shown}; why: {reasons})"
    return text


def bin_story(state: CityState) -> str:
    bins = [r for r in state.nodes.values() if r.kind == "bin"]
    if not bins:
        return ""
    full = sum(1 for r in bins if (r.world_value or 0) >= 80)
    half = sum(1 for r in bins if 50 <= (r.world_value or 0) < 80)
    alarms = sorted(f"{r.alarm} {r.name}" for r in bins if r.alarm)
    text = (
        f"bins: {full} full, {half} over half, {len(bins) - full - half} below; "
        f"emptied by the truck {state.counters.get('truck_bins_emptied', 0):g}"
    )
    if alarms:
        text += "; alarms: " + ", ".join(alarms)
    return text


def command_story(state: CityState) -> str:
    parts = []
    for message, per_state in sorted(state.command_counts.items()):
        counts = ", ".join(f"{per_state[s]} {s}" for s in COMMAND_STATES if per_state.get(s))
        if counts:
            parts.append(f"{message} ({counts})")
    return "commands: " + ("; ".join(parts) if parts else "none yet")


def _bar(value: float | None, width: int = 10) -> Text:
    if value is None:
        return Text("-".ljust(width), style="dim")
    filled = max(0, min(width, round(value / 100 * width)))
    style = "red" if value >= 80 else "yellow" if value >= 50 else "green"
    return Text("█" * filled + "·" * (width - filled), style=style)


def _lamp_bar(value: float | None, width: int = 8) -> Text:
    if value is None:
        return Text("-".ljust(width), style="dim")
    filled = max(0, min(width, round(value / 100 * width)))
    style = "bold yellow" if value >= 75 else "yellow" if value >= 40 else "dim yellow"
    return Text("█" * filled + "·" * (width - filled), style=style)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def render(state: CityState, *, width: int = 120, height: int = 40) -> Group:
    """The whole screen as one rich renderable, for a terminal ``width`` × ``height``."""
    clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.sim_time))
    header = Text()
    header.append(f"{state.title}  ", style="bold")
    header.append(f"simulated {clock} ({'night' if state.dark else 'day'}, ×{state.speed:g})  ")
    if state.api_url:
        dashboard = state.api_url.removesuffix("/api/v1") + "/"
        header.append(f"dashboard {dashboard} (token in {state.token_file})", style="cyan")
    parts = "  ".join(f"{name}: {status}" for name, status in state.components.items())

    # two tables side by side, 3 columns apart; one space between columns (right padding only)
    half = max(30, (width - 3) // 2)
    name_width = max(8, half - (8 + 5 + 4 + 9 + 4))
    reconcile = reconciliation_lines(state.counters)
    kinds = max(1, len(state.command_counts))
    # header 2-3, tables 2 + rows, legend 2, commands 2 + kinds, legend 2, counts, events 2 + 4
    rows = max(3, height - (3 + 2 + 2 + 2 + kinds + 2 + len(reconcile) + 6) - 1)

    def table(title: str, first: str, second: str, last: str, last_width: int) -> Table:
        t = Table(title=title, expand=True, pad_edge=False, box=None, padding=(0, 1, 0, 0))
        t.add_column(first, no_wrap=True, width=name_width)
        t.add_column(second, no_wrap=True, width=8)
        t.add_column("world", no_wrap=True, width=5, justify="right")
        t.add_column("gw", no_wrap=True, width=4, justify="right")
        t.add_column(last, no_wrap=True, width=last_width, overflow="ellipsis")
        return t

    bins = table("bins, fullest first", "bin", "fill", "alarm", 9)
    bin_rows = sorted(
        (r for r in state.nodes.values() if r.kind == "bin"),
        key=lambda r: (-(r.world_value or 0), r.name),
    )
    for row in bin_rows[:rows]:
        bins.add_row(
            short_name(row.name.removeprefix("bin-"), name_width),
            _bar(row.world_value, 8),
            _pct(row.world_value),
            _pct(row.reported_value),
            Text(row.alarm, style="bold red"),
        )

    lamps = table("lamps, brightest first", "lamp", "level", "why", 9)
    lamp_rows = sorted(
        (r for r in state.nodes.values() if r.kind == "lamp"),
        key=lambda r: (-(r.world_value or 0), r.street, r.name),
    )
    for row in lamp_rows[:rows]:
        lit = (row.world_value or 0) > 0
        lamps.add_row(
            short_name(row.name.removeprefix("lamp-"), name_width),
            _lamp_bar(row.world_value, 8),
            _pct(row.world_value),
            _pct(row.reported_value),
            LAMP_WHY.get(row.mode, row.mode) if lit else "off",
        )

    commands = Table(title="commands by kind and state", expand=True, pad_edge=False, box=None)
    commands.add_column("kind", no_wrap=True)
    for name in COMMAND_STATES:
        commands.add_column(name, no_wrap=True, justify="right")
    for message, per_state in sorted(state.command_counts.items()):
        commands.add_row(message, *(f"{per_state.get(s, 0):g}" for s in COMMAND_STATES))

    grid = Table.grid(expand=True, padding=(0, 3, 0, 0))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(bins, lamps)
    return Group(
        header,
        Text(parts, style="dim"),
        grid,
        Text(f"{VALUE_LEGEND} · {LAMP_LEGEND}", style="dim"),
        commands,
        Text(COMMAND_LEGEND, style="dim"),
        Text("\n".join(reconcile), style="dim"),
        # Text, not a markup string: "[sim 15:20:00]" is not a rich style tag
        Panel(Text("\n".join(list(state.events)[-4:]) or "(no events yet)"), title="what happened"),
    )


class View:
    """A live screen on a terminal; plain lines (the story, periodic summaries) otherwise."""

    def __init__(self, state: CityState, *, stream: IO[str] | None = None) -> None:
        self.state = state
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty()
        self._live: Live | None = None
        self._console = Console(file=self.stream)
        if not self.live_mode:
            state.sinks.append(self.line)

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> View:
        if self.live_mode:
            self._live = Live(
                self._render(), console=self._console, refresh_per_second=4, screen=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None
        if not self.live_mode and self.line in self.state.sinks:
            self.state.sinks.remove(self.line)

    def _render(self) -> Group:
        return render(self.state, width=self._console.width, height=self._console.height)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def summary_lines(self) -> list[str]:
        """The city in a few lines (plain output every few seconds, and at the end)."""
        s = self.state
        joined = int(s.counters.get("nodes_joined", sum(1 for r in s.nodes.values() if r.joined)))
        stamp = f"[sim {s.stamp()}]"
        lines = [f"{stamp} nodes joined {joined}/{len(s.nodes)}"]
        for text in (bin_story(s), lamp_story(s), command_story(s)):
            if text:
                lines.append(f"{stamp} {text}")
        lines += [f"{stamp} {text}" for text in reconciliation_lines(s.counters)]
        return lines

    def summary(self) -> str:
        return "\n".join(self.summary_lines())
