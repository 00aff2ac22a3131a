"""Register a batch: ChirpStack profiles, devices and keys, then the gateway's registry.

Per node the steps are device → keys → gateway registry, each idempotent (see
:mod:`tools.provision.chirpstack`, :mod:`tools.provision.registry`). A node that fails is reported
and the batch goes on; a bad token or an unreachable server stops the batch at once (every other
node would fail the same way). Run the same command again to finish a partly failed batch.

OS2iot: where OS2iot owns the ChirpStack devices (Aarhus) they must not be created behind its
back: ``register --os2iot URL`` creates them through OS2iot's API instead
(:mod:`tools.provision.os2iot`, docs/os2iot.md), and ``register --no-chirpstack`` fills the
gateway registry alone.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from tools.provision.chirpstack import ChirpStack, RpcFailure
from tools.provision.errors import RegistrationError
from tools.provision.inventory import Node, Secrets
from tools.provision.registry import GatewayRegistry


@dataclass
class BatchReport:
    profiles: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (id, outcome)
    outcomes: Counter[str] = field(default_factory=Counter)  # "device created", "keys unchanged"…
    failures: list[tuple[str, str]] = field(default_factory=list)  # (dev_eui, one-line reason)

    @property
    def changed(self) -> int:
        return sum(n for key, n in self.outcomes.items() if not key.endswith("unchanged"))

    def summary(self) -> str:
        parts = [f"{name} {outcome}" for name, (_, outcome) in sorted(self.profiles.items())]
        parts += [f"{key}: {n}" for key, n in sorted(self.outcomes.items())]
        parts.append(f"failed: {len(self.failures)}")
        return "; ".join(parts)


def register_batch(
    nodes: Sequence[Node],
    secrets: Secrets,
    chirpstack: ChirpStack | None,
    *,
    tenant_id: str,
    application_id: str,
    codec_script: str,
    registry: GatewayRegistry | None = None,
    console: Console | None = None,
) -> BatchReport:
    report = BatchReport()
    profile_ids: dict[tuple[str, str], str] = {}
    if chirpstack is not None:
        for node in nodes:  # every key must be there before anything is written
            secrets.app_key(node.dev_eui)
        for kind, region in sorted({(n.kind, n.region) for n in nodes}):
            profile_id, outcome = chirpstack.ensure_profile(tenant_id, kind, region, codec_script)
            profile_ids[(kind, region)] = profile_id
            report.profiles[f"profile citypack-{kind}-{region.lower()}"] = (profile_id, outcome)
    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("registering"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task("", total=len(nodes))
        for_registry: list[Node] = []
        for node in nodes:
            progress.update(task, description=node.name)
            try:
                if chirpstack is not None:
                    device = chirpstack.ensure_device(
                        node, application_id, profile_ids[(node.kind, node.region)]
                    )
                    report.outcomes[f"device {device}"] += 1
                    keys = chirpstack.ensure_keys(node.dev_eui, secrets.app_key(node.dev_eui))
                    report.outcomes[f"keys {keys}"] += 1
                for_registry.append(node)
            except RpcFailure as failure:
                report.failures.append((node.dev_eui, str(failure)))
            except RegistrationError as error:
                if _is_fatal(error):
                    raise
                report.failures.append((node.dev_eui, str(error)))
            if chirpstack is not None or registry is None:
                progress.advance(task)
        if registry is not None:
            # a batch per request (the gateway commits it once): issue 20, >= 500 nodes/s
            progress.update(task, description="gateway registry")
            for node, entry in zip(for_registry, registry.ensure_many(for_registry), strict=True):
                if isinstance(entry, RegistrationError):
                    report.failures.append((node.dev_eui, str(entry)))
                else:
                    report.outcomes[f"registry {entry}"] += 1
                if chirpstack is None:
                    progress.advance(task)
    return report


def _is_fatal(error: RegistrationError) -> bool:
    text = str(error)
    return any(
        marker in text
        for marker in ("UNAUTHENTICATED", "PERMISSION_DENIED", "cannot reach", "refused the token")
    )


def print_report(report: BatchReport, *, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    for name, (profile_id, outcome) in sorted(report.profiles.items()):
        print(f"{name}: {outcome} ({profile_id})", file=stream)
    for dev_eui, reason in report.failures:
        print(f"FAILED {dev_eui}: {reason}", file=stream)
    print(report.summary(), file=stream)
