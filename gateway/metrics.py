"""Prometheus metrics of one gateway (names fixed by ARCHITECTURE.md "Metrics").

Each :class:`Metrics` owns its own ``CollectorRegistry`` (not the process-global one), so tests
and benchmarks can run several gateways in one process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["UPLINK_OUTCOMES", "Metrics", "Tally", "read"]

UPLINK_OUTCOMES = ("processed", "duplicate", "undecodable", "invalid_event")


def read(metric: Counter | Gauge, **labels: str) -> float:
    """The value ``/metrics`` shows for ``metric`` with ``labels`` (0 when it has no such
    child yet), read through prometheus_client's public ``collect()`` rather than a child's
    private value: the API's ``/stats``, the tests and the benches read counters this way.
    Collecting one metric walks only its own children (a handful here)."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.labels == labels and not sample.name.endswith("_created"):
                return float(sample.value)
    return 0.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.uplinks = Counter(
            "citypack_uplinks",
            "ChirpStack events received on the up topic (and any event that does not parse), "
            "by outcome, counted when the batch holding them commits",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in UPLINK_OUTCOMES:
            self.uplinks.labels(outcome)
        self.downlinks = Counter(
            "citypack_downlinks",
            "Command state transitions (queued, sent, acknowledged, applied, failed, expired, "
            "replaced, cancelled)",
            ["state"],
            registry=self.registry,
        )
        self.uplink_seconds = Histogram(
            "citypack_uplink_seconds",
            "Time from receiving an uplink from MQTT to its batch being committed",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.devices = Gauge(
            "citypack_devices",
            "Devices in the registry by kind and availability",
            ["kind", "availability"],
            registry=self.registry,
        )
        self.events = Counter(
            "citypack_events",
            "ChirpStack events received, by event type",
            ["event"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "citypack_dropped_messages",
            "Messages dropped because a bounded queue was full (never ChirpStack events: those "
            "stay unacknowledged at the broker)",
            ["queue"],
            registry=self.registry,
        )
        self.derived_events = Counter(
            "citypack_derived_events",
            "Events derived by the rules, by type",
            ["type"],
            registry=self.registry,
        )
        self.publish_coalesced = Counter(
            "citypack_publish_coalesced",
            "Normalised messages replaced while waiting by a newer one for the same retained "
            "topic (state, availability, retained): only the latest is published",
            ["kind"],
            registry=self.registry,
        )
        self.publish_dropped = Counter(
            "citypack_publish_dropped",
            "Normalised messages dropped because the outbox was full (events past "
            "[mqtt] queue_size; they are still in the store)",
            ["kind"],
            registry=self.registry,
        )
        self.unknown_rejected = Counter(
            "citypack_unknown_devices_rejected",
            "Events of devices not in the registry that were not auto-registered ([fleet] "
            "auto_register off, or max_auto_registered reached): kept as dead letters",
            ["reason"],
            registry=self.registry,
        )
        self.mqtt_connected = Gauge(
            "citypack_mqtt_connected", "1 while connected to the broker", registry=self.registry
        )
        # a full disk or a database that is away shows here before anyone asks /readyz
        self.store_ok = Gauge(
            "citypack_store_ok",
            "1 while the store commits; 0 from a failed commit or read until one succeeds",
            registry=self.registry,
        )
        self.store_failures = Counter(
            "citypack_store_failures",
            "store commits and reads that failed (the batch is kept and retried; nothing is "
            "acknowledged meanwhile)",
            registry=self.registry,
        )

        # what a batch's messages counted, added when it commits (gateway/service.py)
        self.pending = Tally()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Tally:
    """Counter increments held with the batch that caused them and added when it commits. A
    batch the store refuses is dropped and its messages are processed again (gateway/service.py
    ``_abandon_batch``): counted when processed, each would count once per attempt. Keys are
    a counter's children (``counter.labels(...)``)."""

    __slots__ = ("_n",)

    def __init__(self) -> None:
        self._n: dict[Any, int] = {}

    def inc(self, child: Any, amount: int = 1) -> None:
        n = self._n
        n[child] = n.get(child, 0) + amount

    def take(self) -> dict[Any, int]:
        """What is held so far, for the batch being committed; the tally starts again."""
        taken, self._n = self._n, {}
        return taken

    def put_back(self, taken: dict[Any, int]) -> None:
        """A commit that failed keeps its batch for the next attempt, with its counts."""
        for child, amount in taken.items():
            self.inc(child, amount)

    def clear(self) -> None:
        """The batch was dropped: what it counted comes again with its messages."""
        self._n.clear()

    @staticmethod
    def settle(taken: dict[Any, int]) -> None:
        """The batch committed: count it."""
        for child, amount in taken.items():
            child.inc(amount)
