"""What the demo shows: a live terminal view (rich) or plain lines when stdout is not a terminal.

:class:`CityState` collects what happens from every source the demo has: the simulated world
(truth), the ChirpStack-shaped MQTT traffic (uplinks, command/down, txack, ack) and the gateway's
normalised topics (``citypack/devices/+/state``, ``citypack/events/+``). The view draws it; it
never invents a figure, and a column whose source is not running shows "-".
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


@dataclass(slots=True)
class NodeRow:
    dev_eui: str
    kind: str  # "bin" | "lamp"
    name: str
    street: str
    world_value: float | None = None  # fill % (bins) or dimmer level % (lamps) in the world
    reported_value: float | None = None  # what the gateway's twin says
    mode: str = ""
    joined: bool = False
    uplinks: int = 0
    last_uplink: float | None = None
    alarm: str = ""


@dataclass(slots=True)
class CommandRow:
    key: str  # the gateway's command id when known, else devEui/fCnt
    dev_eui: str
    message: str
    state: str
    updated: float


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
    commands: dict[str, CommandRow] = field(default_factory=dict)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=14))
    counters: dict[str, float] = field(default_factory=dict)
    on_line: Callable[[str], None] | None = None  # plain output: each event as one line

    def count(self, name: str, by: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def event(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime(self.sim_time)) if self.sim_time else "--"
        line = f"[sim {stamp}] {text}"
        self.events.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def command(self, key: str, dev_eui: str, message: str, state: str) -> None:
        row = self.commands.get(key)
        if row is None:
            row = self.commands[key] = CommandRow(key, dev_eui, message, state, self.sim_time)
            if len(self.commands) > 200:
                oldest = min(self.commands.values(), key=lambda r: r.updated)
                del self.commands[oldest.key]
        if row.state != state or row.message != message:
            if message:
                row.message = message
            row.state = state
            row.updated = self.sim_time
            self.event(f"command {row.message or '?'} → {self.name_of(dev_eui)}: {state}")

    def name_of(self, dev_eui: str) -> str:
        row = self.nodes.get(dev_eui)
        return row.name if row else dev_eui


_HEADLINE = (
    ("nodes_joined", "joined"),
    ("uplinks_on_air", "uplinks"),
    ("gateway_uplinks_processed", "processed"),
    ("downlinks_delivered", "downlinks"),
    ("commands_sent", "commands"),
    ("road_users_on_streets", "road users"),
    ("truck_bins_emptied", "emptied"),
)


def _bar(value: float | None, width: int = 10) -> Text:
    if value is None:
        return Text("-".ljust(width), style="dim")
    filled = max(0, min(width, round(value / 100 * width)))
    style = "red" if value >= 80 else "yellow" if value >= 50 else "green"
    return Text("█" * filled + "·" * (width - filled), style=style)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def render(state: CityState, *, max_rows: int = 14) -> Group:
    """The whole screen as one rich renderable."""
    clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.sim_time))
    header = Text()
    header.append(f"{state.title}  ", style="bold")
    header.append(f"sim {clock} ({'night' if state.dark else 'day'}, ×{state.speed:g})  ")
    if state.api_url:
        dashboard = state.api_url.removesuffix("/api/v1") + "/"
        header.append(
            f"dashboard {dashboard}  API {state.api_url}  token {state.token_file}", style="cyan"
        )
    parts = "  ".join(f"{name}: {status}" for name, status in state.components.items())
    counters = "  ".join(
        f"{label} {state.counters[key]:g}" for key, label in _HEADLINE if key in state.counters
    )

    bins = Table(title="bins by fill", expand=True, pad_edge=False, box=None)
    bins.add_column("bin", no_wrap=True, overflow="ellipsis", ratio=1)
    bins.add_column("fill", no_wrap=True, width=8)
    bins.add_column("now", no_wrap=True, width=4, justify="right")
    bins.add_column("gw", no_wrap=True, width=4, justify="right")
    bins.add_column("alarm", no_wrap=True, width=5, overflow="ellipsis")
    bin_rows = sorted(
        (r for r in state.nodes.values() if r.kind == "bin"),
        key=lambda r: -(r.world_value or 0),
    )
    for row in bin_rows[:max_rows]:
        bins.add_row(
            row.name.removeprefix("bin-"),
            _bar(row.world_value, 8),
            _pct(row.world_value),
            _pct(row.reported_value),
            Text(row.alarm, style="bold red"),
        )

    lamps = Table(title="lamps by level", expand=True, pad_edge=False, box=None)
    lamps.add_column("lamp", no_wrap=True, overflow="ellipsis", ratio=1)
    lamps.add_column("level", no_wrap=True, width=8)
    lamps.add_column("now", no_wrap=True, width=4, justify="right")
    lamps.add_column("gw", no_wrap=True, width=4, justify="right")
    lamps.add_column("mode", no_wrap=True, width=8, overflow="ellipsis")
    lamp_rows = sorted(
        (r for r in state.nodes.values() if r.kind == "lamp"),
        key=lambda r: (-(r.world_value or 0), r.street, r.name),
    )
    for row in lamp_rows[:max_rows]:
        lamps.add_row(
            row.name.removeprefix("lamp-"),
            _bar(row.world_value, 8),
            _pct(row.world_value),
            _pct(row.reported_value),
            row.mode.replace("presence_boost", "boost"),
        )

    commands = Table(title="commands", expand=True, pad_edge=False, box=None)
    for col in ("node", "message", "id", "state"):
        commands.add_column(col, no_wrap=True, overflow="ellipsis")
    for cmd in sorted(state.commands.values(), key=lambda r: -r.updated)[:8]:
        style = {"applied": "green", "failed": "red", "expired": "red"}.get(cmd.state, "")
        command_id = cmd.key.rpartition("/")[2]
        commands.add_row(
            state.name_of(cmd.dev_eui), cmd.message, command_id, Text(cmd.state, style)
        )

    grid = Table.grid(expand=True)
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(bins, lamps)
    return Group(
        header,
        Text(parts, style="dim"),
        Text(counters, style="dim"),
        grid,
        commands,
        Panel("\n".join(list(state.events)[-8:]) or "(no events yet)", title="events"),
    )


class View:
    """A live screen on a terminal; plain lines (events, periodic summaries) otherwise."""

    def __init__(self, state: CityState, *, stream: IO[str] | None = None) -> None:
        self.state = state
        self.stream = stream or sys.stdout
        self.live_mode = self.stream.isatty()
        self._live: Live | None = None
        if not self.live_mode:
            state.on_line = self.line

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> View:
        if self.live_mode:
            console = Console(file=self.stream)
            self._live = Live(
                render(self.state), console=console, refresh_per_second=4, screen=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(render(self.state))
            self._live.__exit__(*exc)
            self._live = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(render(self.state))

    def summary(self) -> str:
        s = self.state
        bins = [r for r in s.nodes.values() if r.kind == "bin"]
        lamps = [r for r in s.nodes.values() if r.kind == "lamp"]
        joined = int(s.counters.get("nodes_joined", sum(1 for r in s.nodes.values() if r.joined)))
        full = sum(1 for r in bins if (r.reported_value or 0) >= 80)
        lit = sum(1 for r in lamps if (r.world_value or 0) > 0)
        counters = " ".join(f"{k}={v:g}" for k, v in sorted(s.counters.items()))
        clock = time.strftime("%H:%M:%S", time.gmtime(s.sim_time))
        return (
            f"[sim {clock}] nodes joined {joined}/{len(s.nodes)}; bins reported full {full}; "
            f"lamps lit {lit}/{len(lamps)}; {counters}"
        )
