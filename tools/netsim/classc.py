"""The class B/C downlink scheduler (ChirpStack ``downlink/scheduler.rs``).

Every ``network.scheduler.interval`` (or sooner, when something is queued) one pass runs:

- **Unicast class C** (:func:`class_c_step`, per device): a confirmed item whose
  ``class_c_timeout`` passed without an ACK is done (``ack`` false); otherwise, when nothing is
  pending, the device has sent an uplink since its join (``check_for_first_uplink``) and its
  class A / class C lock has passed, the next item goes at once (``imme``) with RX2 parameters
  through the gateway that heard its last uplink best; the device is then locked for
  ``class_c_lock_duration``.
- **Multicast** (:func:`multicast_window`): the due items of :mod:`tools.netsim.multicast` go at
  once on their group's frequency and data rate.

:class:`SchedulerLoop` is the task that runs the passes; ``wake()`` runs one now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from tools.netsim import region
from tools.netsim.downlink import txpk_window
from tools.netsim.multicast import McGroup
from tools.netsim.state import DeviceState, QueueItem, RxCopy, Window

__all__ = ["ClassCStep", "SchedulerLoop", "class_c_step", "multicast_window"]

log = logging.getLogger("citypack.netsim")


@dataclass
class ClassCStep:
    """What one scheduler pass does for one device."""

    timed_out: list[QueueItem] = field(default_factory=list)  # removed: publish ``ack`` false
    via: RxCopy | None = None  # send the next item now through this reception's gateway
    wake_at: float | None = None  # when this device needs the scheduler again


def _earliest(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def class_c_step(state: DeviceState, now: float, attached: Callable[[str], bool]) -> ClassCStep:
    """One device's share of a pass (loop times); removes the timed-out items from its queue."""
    step = ClassCStep()
    if state.enabled_class != "C" or state.session is None:
        return step
    for item in list(state.queue):
        if item.is_pending and item.timeout_at is not None:
            if item.timeout_at <= now:
                state.queue.remove(item)
                step.timed_out.append(item)
            else:
                step.wake_at = _earliest(step.wake_at, item.timeout_at)
    if not state.queue or any(i.is_pending for i in state.queue):
        return step
    if not state.last_rx or state.session.last_f_cnt is None:
        return step  # check_for_first_uplink: no gateway known yet
    if now < state.scheduler_run_after:
        step.wake_at = _earliest(step.wake_at, state.scheduler_run_after)
        return step
    via = max(state.last_rx, key=lambda c: c.snr)
    if attached(via.gateway_id):
        step.via = via
    return step


def class_c_window(rx2_frequency_hz: int, rx2_dr: int) -> Window:
    """A unicast class C transmission: at once, with the RX2 parameters (L2 §3.3.1 / §6)."""
    return txpk_window(rx2_frequency_hz, rx2_dr, region.RX2_POWER_DBM, None, None)


def multicast_window(group: McGroup) -> Window:
    """A multicast transmission: at once, on the group's frequency and data rate, with the
    region's power for that frequency (27 dBm on 869.525 MHz, else 14 dBm)."""
    power = (
        region.RX2_POWER_DBM
        if group.frequency_hz == region.RX2_FREQUENCY_HZ
        else region.RX1_POWER_DBM
    )
    return txpk_window(group.frequency_hz, group.dr, power, None, None)


class SchedulerLoop:
    """Runs ``run_pass`` every ``interval_s``, or at once after :meth:`wake`."""

    def __init__(self, interval_s: float, run_pass: Callable[[], None]) -> None:
        self.interval_s = interval_s
        self._run_pass = run_pass
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="netsim-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            task = self._task
            # Python 3.11's asyncio.wait_for returns the inner result and drops a cancel that
            # arrives as the inner wait completes (CPython gh-86296): cancel until it is done
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.05)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):  # not wait_for: gh-86296
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._run_pass()
            except Exception:
                log.exception("netsim: the class C scheduler failed")
