"""Two gateway instances on one PostgreSQL store and one broker (issue 16 item 3), in this
test's event loop: a shared subscription splits ChirpStack's stream, every uplink delivered twice
is stored once, a command submitted on one instance is handed to ChirpStack once by the
dispatching instance, both APIs and live streams see the whole fleet, each instance has its own
bridge state, and the fleet view counts them. The kill -9 variant with real processes is
tests/faults/test_fleet_failover.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gateway.metrics import read
from gateway.store import Device, EventRecord
from protocol import codec
from tests.gateway import events as ev
from tests.gateway.harness import (
    Clock,
    Running,
    make_config,
    mqtt_client,
    os2iot_push,
    refuse_commits,
    start,
    wait_for,
)
from tests.helpers.procs import Broker

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

BINS = [f"a84041000181c{i:03x}" for i in range(8)]
LAMPS = ["a84041000181d0b1", "a84041000181d0b2", "a84041000181d0b3"]


async def _pair(broker: Broker, tmp_path: Path, url: str) -> tuple[Running, Running, str, str]:
    (a, b), app, base = await _instances(broker, tmp_path, url, ("a", "b"))
    return a, b, app, base


async def _instances(
    broker: Broker, tmp_path: Path, url: str, names: tuple[str, ...], **sections: Any
) -> tuple[list[Running], str, str]:
    app, base = str(uuid.uuid4()), f"cp{uuid.uuid4().hex[:8]}"
    group = f"g{uuid.uuid4().hex[:6]}"
    running = []
    for name in names:
        config = make_config(
            broker,
            tmp_path / f"{name}.db",
            app=app,
            base=base,
            mqtt={"shared_group": group, "client_id": f"gw-{name}-{uuid.uuid4().hex[:6]}"},
            store={"url": url},
            **sections,
        )
        running.append(await start(config, Clock(), app, base))
    return running, app, base


class _Heard:
    def __init__(self) -> None:
        self.events: list[EventRecord] = []
        self.devices: list[str] = []

    def event(self, record: EventRecord) -> None:
        self.events.append(record)

    def device(self, device: Device) -> None:
        self.devices.append(device.dev_eui)


async def test_two_instances_share_the_stream_and_the_fleet(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    a, b, app, base = await _pair(mosquitto_broker, tmp_path, postgres_url)
    heard = [_Heard(), _Heard()]
    a.gateway.publisher.add_listener(heard[0])
    b.gateway.publisher.add_listener(heard[1])
    try:
        for dev in BINS:
            assert (await a.http.put(f"/api/v1/devices/{dev}", json={"kind": "bin"})).is_success
        for i, dev in enumerate(LAMPS):
            body = {"kind": "lamp", "neighbours": [d for d in LAMPS if d != dev], "street": f"s{i}"}
            assert (await a.http.put(f"/api/v1/devices/{dev}", json=body)).is_success

        async def b_knows_all() -> bool:
            answer = await b.http.get("/api/v1/devices")
            return answer.is_success and len(answer.json()["devices"]) == len(BINS) + len(LAMPS)

        await wait_for(b_knows_all, "b learns the registry from a's commits")

        # every uplink published twice (ChirpStack redelivering; the copies may go to either)
        stream = []
        for f_cnt in range(1, 16):
            for dev in BINS:
                _, data = codec.encode(
                    "bin_status", {"fill_percent": f_cnt, "temperature_c": 9, "battery_percent": 80}
                )
                stream.append((dev, ev.up(app, dev, f_cnt=f_cnt, f_port=10, data=data)))
        for f_cnt, dev in enumerate(LAMPS * 3, start=1):
            _, data = codec.encode("lamp_presence", {"road_users": 1, "dim_level": 100})
            stream.append((dev, ev.up(app, dev, f_cnt=f_cnt, f_port=22, data=data)))
        async with mqtt_client(mosquitto_broker) as (client, _):
            for dev, doc in stream:
                await client.publish(ev.topic(app, dev, "up"), ev.dumps(doc), qos=1)
            for dev, doc in reversed(stream):
                await client.publish(ev.topic(app, dev, "up"), ev.dumps(doc), qos=1)

            async def stored() -> int:
                return int((await b.http.get("/api/v1/stats")).json()["uplinks_stored"])

            try:
                await wait_for(lambda: _eq(stored, len(stream)), "every uplink stored", 30)
            except AssertionError:
                raise AssertionError(await _stalled(a, b, stored, len(stream))) from None
            await wait_for(
                lambda: (
                    a.counter("processed")
                    + b.counter("processed")
                    + a.counter("duplicate")
                    + b.counter("duplicate")
                    == 2 * len(stream)
                ),
                "every copy handled",
                30,
            )
        assert a.counter("processed") + b.counter("processed") == len(stream)
        assert a.counter("processed") > 0 and b.counter("processed") > 0  # the stream was shared
        store = b.gateway.store
        ids: list[str] = []
        for dev in BINS + LAMPS:
            ids += [u["deduplication_id"] for u in await store.uplinks(dev, limit=1000)]
        assert sorted(ids) == sorted(doc["deduplicationId"] for _, doc in stream)
        # a device's twin is the one row both serve, with its newest uplink applied (an older
        # one the other instance applied after it changes no state)
        for running in (a, b):
            doc = (await running.http.get(f"/api/v1/devices/{BINS[0]}")).json()
            assert doc["reported"]["fill_percent"] == 15
        # one presence uplink: one lamp_presence event and one boost per neighbour, fleet-wide
        # (a late one too: what a lamp saw counts in any order, gateway/fleet/core.py)
        presences = await store.events(type="lamp_presence", dev_eui=None, since=None, limit=100)
        assert len(presences) == 3 * len(LAMPS)
        boosts = [
            e
            for e in await store.events(type="command_queued", dev_eui=None, since=None, limit=500)
            if e.data["message"] == "lamp_override"
        ]
        assert len(boosts) == 3 * len(LAMPS) * (len(LAMPS) - 1)

        # each live stream hears every presence: from its own instance as it publishes it, from
        # the other through the change feed, so each is heard twice in all, once on each side
        def heard_presences() -> list[str]:
            return [
                f"{side}:{e.dev_eui}"
                for side, h in enumerate(heard)
                for e in h.events
                if e.type == "lamp_presence"
            ]

        await wait_for(lambda: len(heard_presences()) == 2 * len(presences), "live streams")
        counts = Counter(heard_presences())
        assert counts == Counter({f"{side}:{d}": 3 for side in (0, 1) for d in LAMPS})
        # a command submitted on one instance goes to ChirpStack once, from the dispatcher
        down = f"application/{app}/device/{BINS[1]}/command/down"
        async with mqtt_client(mosquitto_broker, down) as (client, got):
            answer = await a.http.post(
                f"/api/v1/devices/{BINS[1]}/commands",
                json={"message": "reboot", "fields": {}, "confirmed": False},
            )
            assert answer.status_code == 202, answer.text
            command = answer.json()
            await wait_for(lambda: len(got) >= 1, "command handed to ChirpStack")

            await client.publish(
                ev.topic(app, BINS[1], "txack"),
                ev.dumps(ev.txack(app, BINS[1], command["id"])),
                qos=1,
            )
            for running in (a, b):

                async def sent(r: Running = running) -> bool:
                    doc = (await r.http.get(f"/api/v1/commands/{command['id']}")).json()
                    return bool(doc["state"] == "sent")

                await wait_for(sent, "both instances see the txack")
            await asyncio.sleep(0.5)
            assert [json.loads(p)["id"] for _, p in got] == [command["id"]]

        # the fleet view, and one bridge state per instance
        view = (await b.http.get("/api/v1/instances")).json()
        assert view["up"] == 2
        assert {i["client_id"] for i in view["instances"]} == {
            a.config.mqtt.client_id,
            b.config.mqtt.client_id,
        }
        leading = sorted(
            (await a.http.get("/api/v1/instances")).json()["leading"] + view["leading"]
        )
        assert leading == ["dispatch", "maintenance"]  # each job on exactly one instance
        await a.stop()
        async with mqtt_client(mosquitto_broker, f"{base}/bridge/+/state") as (_, states):
            await wait_for(lambda: len(states) >= 2, "retained bridge states")
            by_topic = dict(states)
            assert by_topic[f"{base}/bridge/{a.config.mqtt.client_id}/state"] == b"offline"
            assert by_topic[f"{base}/bridge/{b.config.mqtt.client_id}/state"] == b"online"
    finally:
        for running in (a, b):
            if not running.task.done():
                await running.stop()


async def _stalled(a: Running, b: Running, stored: Any, expected: int) -> str:
    """What a stalled stream looks like: the counts on each side and where every task of this
    loop (both instances run in it) is waiting, for a failure to say why it happened."""
    counts = {
        name: {o: r.counter(o) for o in ("processed", "duplicate", "invalid_event")}
        for name, r in (("a", a), ("b", b))
    }
    tasks = []
    for task in asyncio.all_tasks():
        if task.get_name().startswith(("publish-qos1-", "pool-")):  # idle workers, many
            continue
        frames = task.get_stack(limit=6)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        tasks.append(f"{task.get_name()}: {where}")
    return (
        f"stored {await stored()} of {expected}; {counts}; flush locks held: "
        f"a={a.gateway.flush_lock.locked()} b={b.gateway.flush_lock.locked()}; tasks: "
        + "; ".join(sorted(tasks))
    )


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value() == expected)


async def test_database_outage_readyz_no_ack_and_resume(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL unreachable (every connection dropped, new ones refused, through a proxy):
    /readyz says 503, nothing processed meanwhile is acknowledged, and once the database is back
    the gateway carries on by itself and every uplink is stored exactly once."""
    from tests.helpers.tcp_proxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", int(postgres_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    app, base = str(uuid.uuid4()), f"cp{uuid.uuid4().hex[:8]}"
    config = make_config(
        mosquitto_broker, tmp_path / "x.db", app=app, base=base, store={"url": url}
    )
    gw = await start(config, Clock(), app, base)
    try:
        assert (await gw.http.put(f"/api/v1/devices/{BINS[0]}", json={"kind": "bin"})).is_success
        docs = []
        for f_cnt in range(1, 21):
            _, data = codec.encode(
                "bin_status", {"fill_percent": f_cnt, "temperature_c": 9, "battery_percent": 80}
            )
            docs.append(ev.up(app, BINS[0], f_cnt=f_cnt, f_port=10, data=data))

        async def stored() -> int:
            return len(await gw.gateway.store.uplinks(BINS[0], limit=100))

        async with mqtt_client(mosquitto_broker) as (client, _):
            for doc in docs[:10]:
                await client.publish(ev.topic(app, BINS[0], "up"), ev.dumps(doc), qos=1)
            await wait_for(lambda: _eq(stored, 10), "first half stored")
            await proxy.cut()

            async def not_ready() -> bool:
                return (await gw.http.get("/readyz")).status_code == 503

            await wait_for(not_ready, "readyz 503 while the database is away")
            for doc in docs[10:]:
                await client.publish(ev.topic(app, BINS[0], "up"), ev.dumps(doc), qos=1)
            # a bound, not a speed: with the database cut, the burst's claim waits up to the
            # pool's 5 s for a connection (gateway/store/postgres.py ``_batch``) and its
            # failure is noticed then (gateway/service.py ``_claim_burst``)
            await wait_for(lambda: not gw.gateway.store_ok, "the gateway notices", 30)
            assert gw.counter("processed") == 10  # the rest waits, unacknowledged
            # a command queued while the database is away: the dispatch job waits for it
            command = gw.gateway.submit_command(BINS[0], "reboot", {}, confirmed=False)
            await asyncio.sleep(1.5)  # the dispatcher tried (and waits), the process lives on
            assert not gw.task.done()
            down = f"application/{app}/device/{BINS[0]}/command/down"
            async with mqtt_client(mosquitto_broker, down) as (_, got):
                await proxy.restore()
                await wait_for(lambda: _eq(stored, 20), "resumed by itself", 30)
                await wait_for(lambda: len(got) >= 1, "the waiting command handed over", 30)
                assert json.loads(got[0][1])["id"] == command.id

            async def ready() -> bool:
                return (await gw.http.get("/readyz")).status_code == 200

            await wait_for(ready, "readyz 200 again")
        ids = [u["deduplication_id"] for u in await gw.gateway.store.uplinks(BINS[0], limit=100)]
        assert sorted(ids) == sorted(d["deduplicationId"] for d in docs)
    finally:
        await gw.stop()
        await proxy.close()


async def test_a_failed_burst_claim_is_noticed_at_once(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """A burst's claim that fails (the database away) sets ``store_ok`` False by itself
    (gateway/service.py ``_claim_burst``). Before, the failure was dropped and the gateway
    noticed only when the first message's own claim failed too, one more pool wait later. Here
    that claim is held until the end, so only the burst's failure can be what is noticed."""
    from gateway.errors import StoreError

    (gw,), app, _ = await _instances(mosquitto_broker, tmp_path, postgres_url, ("a",))
    store: Any = gw.gateway.store
    real_claim = store.claim_device
    released = asyncio.Event()

    async def unreachable(*_: Any, **__: Any) -> Any:
        raise StoreError("database unreachable (the test)")

    async def held(dev_eui: str, *, wait: bool = False) -> bool:
        await released.wait()
        return bool(await real_claim(dev_eui, wait=wait))

    try:
        assert (await gw.http.put(f"/api/v1/devices/{BINS[0]}", json={"kind": "bin"})).is_success
        assert gw.gateway.store_ok
        store.claim_devices, store.claim_device = unreachable, held  # this instance's only
        _, data = codec.encode(
            "bin_status", {"fill_percent": 40, "temperature_c": 9, "battery_percent": 80}
        )
        doc = ev.up(app, BINS[0], f_cnt=1, f_port=10, data=data)
        async with mqtt_client(mosquitto_broker) as (client, _):
            await client.publish(ev.topic(app, BINS[0], "up"), ev.dumps(doc), qos=1)
            await wait_for(lambda: not gw.gateway.store_ok, "noticed from the burst's claim")
            assert gw.counter("processed") == 0
            del store.claim_devices  # the class's own again
            released.set()

            async def stored() -> bool:
                return len(await store.uplinks(BINS[0], limit=10)) == 1

            await wait_for(stored, "processed once the claim goes through")
            await wait_for(lambda: gw.gateway.store_ok, "store_ok again with the commit")
    finally:
        released.set()
        await gw.stop()


async def test_takeover_publishes_a_handover_its_feed_never_read(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """The dispatching instance commits a command as handed over and dies before publishing
    it; the instance taking the job over has not read that commit (its change feed lags). It
    must still publish the command again, same id: before the fix its stale copy said "not
    handed over", the claim then read "handed over" and it waited for a PUBACK that never
    comes, with the device's newer commands stuck behind it (tests/faults/test_fleet_failover.py
    saw this once)."""
    import psycopg

    from gateway.store.pg_coordination import JOB_NAMESPACE, job_key

    app, base = str(uuid.uuid4()), f"cp{uuid.uuid4().hex[:8]}"
    # the dispatching instance is this test's session: it holds the job until it "dies"
    leader = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    try:
        await leader.execute(
            "SELECT pg_advisory_lock(%s, %s)", (JOB_NAMESPACE, job_key("dispatch"))
        )
        config = make_config(
            mosquitto_broker,
            tmp_path / "y.db",
            app=app,
            base=base,
            mqtt={"shared_group": f"g{uuid.uuid4().hex[:6]}"},
            store={"url": postgres_url},
        )
        y = await start(config, Clock(), app, base)
    except BaseException:
        await leader.close()
        raise
    try:
        assert "dispatch" not in y.gateway.fleet.leading()  # type: ignore[union-attr]
        assert (await y.http.put(f"/api/v1/devices/{BINS[0]}", json={"kind": "bin"})).is_success
        answer = await y.http.post(
            f"/api/v1/devices/{BINS[0]}/commands",
            json={"message": "reboot", "fields": {}, "confirmed": False},
        )
        assert answer.status_code == 202, answer.text
        command_id = answer.json()["id"]
        held = y.gateway.commands.active[command_id]
        await wait_for(lambda: y.gateway.store.get_command(command_id), "the command committed")
        # y's change feed stops: nothing the leader commits from now on reaches y's copies
        feeds = [t for t in asyncio.all_tasks() if t.get_name() == "feed"]
        assert len(feeds) == 1
        feeds[0].cancel()
        await asyncio.gather(feeds[0], return_exceptions=True)
        # the leader's commit of the handover, as gateway/store/postgres.py writes one (the
        # command's row, and its device's version moved), and then it dies before the publish
        await leader.execute(
            "UPDATE commands SET published_at = %s WHERE id = %s", (time.time(), command_id)
        )
        await leader.execute(
            "UPDATE devices SET version = version + 1, xid = pg_current_xact_id()"
            " WHERE dev_eui = %s",
            (BINS[0],),
        )
        assert held.published_at is None  # y's copy is stale, by construction
        down = f"application/{app}/device/{BINS[0]}/command/down"
        async with mqtt_client(mosquitto_broker, down) as (_, got):
            await leader.close()  # its session ends: the job is free
            await wait_for(lambda: len(got) >= 1, "the handover published again", 20)
            assert [json.loads(p)["id"] for _, p in got] == [command_id]
    finally:
        if not leader.closed:
            await leader.close()
        await y.stop()


async def test_a_device_changed_elsewhere_is_read_when_asked_for(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change feed reads a device another instance changed when something here needs it
    (gateway/fleet_sync.py "lagging"): an API request, the maintenance; a device with an active
    command at once, for the dispatcher. The periodic catch-up is pushed out of the test's
    reach, so what is read when is by construction."""
    from gateway import fleet_sync

    monkeypatch.setattr(fleet_sync, "CATCH_UP_S", 3600.0)
    monkeypatch.setattr(fleet_sync, "READ_CHUNK", 1)  # a catch-up of two reads two chunks
    a, b, _, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    try:
        for dev in BINS[:2]:
            body = {"kind": "bin", "street": "Havnegade"}
            assert (await a.http.put(f"/api/v1/devices/{dev}", json=body)).is_success
        fleet = b.gateway.fleet
        assert fleet is not None
        await wait_for(lambda: all(d in b.gateway.devices for d in BINS[:2]), "b knows both")

        # registry changes on a: b's feed sees them, and leaves them until asked
        for dev in BINS[:2]:
            body = {"kind": "bin", "street": "Åboulevarden"}
            assert (await a.http.put(f"/api/v1/devices/{dev}", json=body)).is_success
        await wait_for(lambda: fleet.lagging() == 2, "b's feed sees the changes")
        assert {b.gateway.devices[d].street for d in BINS[:2]} == {"Havnegade"}
        doc = (await b.http.get(f"/api/v1/devices/{BINS[0]}")).json()
        assert doc["street"] == "Åboulevarden"  # read for the answer
        assert fleet.lagging() == 0
        assert {b.gateway.devices[d].street for d in BINS[:2]} == {"Åboulevarden"}

        # changed on a again; b then claims one of them (as its next uplink would: the claim
        # reads it again), and the catch-up reads only the other one
        for dev in BINS[:2]:
            body = {"kind": "bin", "street": "Mejlgade"}
            assert (await a.http.put(f"/api/v1/devices/{dev}", json=body)).is_success
        await wait_for(lambda: fleet.lagging() == 2, "b's feed sees the changes")
        store = b.gateway.store
        async with b.gateway.flush_lock:
            changed, busy = await store.claim_devices([BINS[0]])
            assert (changed, busy) == ([BINS[0]], [])
            devices, commands = await store.load_devices_claimed(changed)
            for device in devices:
                b.gateway.adopt_device(device, commands.get(device.dev_eui, []))
            await store.commit()
        assert b.gateway.devices[BINS[0]].street == "Mejlgade"
        reads: list[list[str]] = []
        reload = store.reload

        async def counted(dev_euis: list[str]) -> Any:
            reads.append(list(dev_euis))
            return await reload(dev_euis)

        monkeypatch.setattr(store, "reload", counted)
        assert (await b.http.get(f"/api/v1/devices/{BINS[1]}")).json()["street"] == "Mejlgade"
        assert reads == [[BINS[1]]]  # BINS[0], had since at that version, is not read again
        assert fleet.lagging() == 0
        monkeypatch.setattr(store, "reload", reload)

        # a command planned on a: b reads it at once, without being asked
        answer = await a.http.post(
            f"/api/v1/devices/{BINS[1]}/commands",
            json={"message": "reboot", "fields": {}, "confirmed": False},
        )
        assert answer.status_code == 202, answer.text
        command_id = answer.json()["id"]
        await wait_for(
            lambda: any(c.id == command_id for c in b.gateway.commands.for_device(BINS[1])),
            "b reads the device with its command",
        )
        assert fleet.lagging() == 0
    finally:
        for running in (a, b):
            if not running.task.done():
                await running.stop()


async def test_events_from_elsewhere_reach_the_live_stream_when_the_device_read_fails(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change feed returns each event of another instance once; a device read failing
    right after it (in the same call: CATCH_UP_S is 0) must not lose them for this instance's
    live stream (gateway/fleet_sync.py)."""
    from gateway import fleet_sync
    from gateway.errors import StoreError

    monkeypatch.setattr(fleet_sync, "CATCH_UP_S", 0.0)
    a, b, app, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    heard = _Heard()
    b.gateway.publisher.add_listener(heard)
    lamp = LAMPS[0]
    try:
        body = {"kind": "lamp", "street": "Havnegade"}
        assert (await a.http.put(f"/api/v1/devices/{lamp}", json=body)).is_success
        await wait_for(lambda: lamp in b.gateway.devices, "b knows the lamp")
        reads = 0

        async def failing(dev_euis: list[str]) -> Any:
            nonlocal reads
            reads += 1
            raise StoreError("connection refused (the test's)")

        with monkeypatch.context() as patch:
            patch.setattr(b.gateway.store, "reload", failing)
            # processed by a itself (not through the shared subscription, which may pick b)
            _, data = codec.encode("lamp_presence", {"road_users": 1, "dim_level": 100})
            doc = ev.up(app, lamp, f_cnt=1, f_port=22, data=data)
            async with a.gateway.flush_lock:
                await a.gateway.process(ev.topic(app, lamp, "up"), ev.dumps(doc))
            await a.gateway.flush()

            def presences() -> int:
                return sum(1 for e in heard.events if e.type == "lamp_presence")

            await wait_for(lambda: reads > 0 and presences() == 1, "heard, though the read failed")
        # the database answers again: the lamp is read after all, its event not heard twice
        await wait_for(
            lambda: b.gateway.devices[lamp].last_f_cnt == 1, "b reads the lamp after all"
        )
        assert presences() == 1
    finally:
        for running in (a, b):
            if not running.task.done():
                await running.stop()


async def test_a_refused_batch_is_counted_once(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """A batch the store refuses (StoreConflict) is dropped and its messages come again from the
    broker: citypack_uplinks_total counts each message once, when its batch commits, not once
    per attempt. Each instance's first commit holding uplinks is refused, inside the real
    commit's transaction (the check for devices held elsewhere), so a refusal happens by
    construction."""
    a, b, app, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    refused: list[Any] = []
    try:
        for dev in BINS:
            assert (await a.http.put(f"/api/v1/devices/{dev}", json={"kind": "bin"})).is_success
        await wait_for(lambda: all(d in b.gateway.devices for d in BINS), "b knows the bins")
        for running in (a, b):
            refuse_commits(running.gateway, refused, lambda batch: bool(batch.uplinks))
        stream = []
        for f_cnt in range(1, 6):
            for dev in BINS:
                _, data = codec.encode(
                    "bin_status",
                    {"fill_percent": 10 * f_cnt, "temperature_c": 9, "battery_percent": 80},
                )
                stream.append((dev, ev.up(app, dev, f_cnt=f_cnt, f_port=10, data=data)))
        async with mqtt_client(mosquitto_broker) as (client, _):
            for dev, doc in stream:
                await client.publish(ev.topic(app, dev, "up"), ev.dumps(doc), qos=1)

        async def stored() -> int:
            return int((await b.http.get("/api/v1/stats")).json()["uplinks_stored"])

        await wait_for(lambda: _eq(stored, len(stream)), "every uplink stored", 30)
        assert refused, "no batch was refused"
        await wait_for(
            lambda: a.counter("processed") + b.counter("processed") >= len(stream),
            "every uplink counted",
            30,
        )
        await asyncio.sleep(0.5)  # a count past the stream would show by now
        # (a message processed after the refusal, before the reconnect, may come again and be
        # a duplicate: its ack went to the old connection)
        assert a.counter("processed") + b.counter("processed") == len(stream)
    finally:
        await a.stop()
        await b.stop()


async def test_an_api_change_in_a_refused_batch_is_made_again(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """A batch the store refuses is dropped whole, the API's change with it: the gateway makes
    the change again before it answers (gateway/service.py ``_committed_on``), so a command
    answered 202 exists in the store; refused every time, the API answers 503
    ``store_unavailable`` with Retry-After and no command."""
    from gateway.service import API_ATTEMPTS

    a, b, _, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    refused: list[Any] = []
    try:
        assert (await a.http.put(f"/api/v1/devices/{BINS[0]}", json={"kind": "bin"})).is_success
        refuse_commits(a.gateway, refused, lambda batch: bool(batch.commands))
        answer = await a.http.post(
            f"/api/v1/devices/{BINS[0]}/commands",
            json={"message": "reboot", "fields": {}, "confirmed": False},
        )
        assert answer.status_code == 202, answer.text
        assert len(refused) == 1
        command_id = answer.json()["id"]
        stored = await b.gateway.store.active_commands()
        assert [c.id for c in stored] == [command_id]

        refused.clear()  # the dispatcher's commits of the first command are let through
        refuse_commits(
            a.gateway,
            refused,
            lambda batch: any(c.id != command_id for c in batch.commands.values()),
            times=API_ATTEMPTS,
        )
        answer = await a.http.post(
            f"/api/v1/devices/{BINS[0]}/commands",
            json={"message": "reboot", "fields": {}, "confirmed": False},
        )
        assert answer.status_code == 503, answer.text
        assert answer.json() == {
            "error": "store_unavailable",
            "message": f"the store refused this change {API_ATTEMPTS} times; try again",
        }
        assert answer.headers["retry-after"] == "1"
        assert len(refused) == API_ATTEMPTS
        assert [c.id for c in await b.gateway.store.active_commands()] == [command_id]
        assert [c.id for c in a.gateway.commands.for_device(BINS[0])] == [command_id]
    finally:
        await a.stop()
        await b.stop()


async def _one_held_one_waiting(a: Running, b: Running, dev_eui: str) -> tuple[str, str]:
    """A bin with two commands: the first handed to ChirpStack (it holds it, no txack), the
    second waiting behind it in the gateway, so it can still be cancelled without ChirpStack."""
    assert (await a.http.put(f"/api/v1/devices/{dev_eui}", json={"kind": "bin"})).is_success
    ids = []
    for version in (2, 3):
        answer = await a.http.post(
            f"/api/v1/devices/{dev_eui}/commands",
            json={"message": "bin_config", "fields": {"config_version": version}},
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])

        async def published(command_id: str = ids[0]) -> bool:
            command = await b.gateway.store.get_command(command_id)
            return command is not None and command.published_at is not None

        await wait_for(published, "the first command handed to ChirpStack", 30)
    return ids[0], ids[1]


async def test_a_cancel_in_a_refused_batch_is_made_again(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """``POST /commands/{id}/cancel`` whose batch the store refuses: the cancel is made again
    (gateway/lifecycle.py through ``Gateway.change_committed``) before the API answers 200, so
    the store holds the command cancelled, and the other instance reads it so."""
    a, b, _, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    refused: list[Any] = []
    try:
        held, waiting = await _one_held_one_waiting(a, b, BINS[1])
        refuse_commits(
            a.gateway,
            refused,
            lambda batch: any(
                c.id == waiting and c.state == "cancelled" for c in batch.commands.values()
            ),
        )
        answer = await a.http.post(f"/api/v1/commands/{waiting}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "cancelled"
        assert refused == [a.gateway.store]
        stored = await b.gateway.store.get_command(waiting)
        print("DEBUG1", stored.state, stored.error, a.gateway.commands.active.get(waiting))
        await asyncio.sleep(1)
        stored = await b.gateway.store.get_command(waiting)
        print("DEBUG2", stored.state, stored.error, a.gateway.commands.active.get(waiting))
        assert stored is not None and stored.state == "cancelled"
        assert stored.error == "cancelled by api"
        assert [c.id for c in await b.gateway.store.active_commands()] == [held]
        again = await b.http.post(f"/api/v1/commands/{waiting}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["message"]
        assert read(a.gateway.metrics.downlinks, state="cancelled") == 1
    finally:
        await a.stop()
        await b.stop()


async def test_a_decommission_in_a_refused_batch_is_made_again(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """``DELETE /devices/{eui}`` whose batch the store refuses: the decommission is made again on
    the device as read back, its waiting command cancelled, before the API answers 200."""
    a, b, _, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    refused: list[Any] = []
    try:
        held, waiting = await _one_held_one_waiting(a, b, BINS[2])
        refuse_commits(
            a.gateway,
            refused,
            lambda batch: any(d.decommissioned_at is not None for d, _ in batch.devices.values()),
        )
        answer = await a.http.delete(f"/api/v1/devices/{BINS[2]}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["cancelled_commands"] == [waiting]
        assert refused == [a.gateway.store]
        device, active = await b.gateway.store.load_device(BINS[2])
        assert device is not None and device.decommissioned_at is not None
        assert [c.id for c in active] == [held]
        stored = await b.gateway.store.get_command(waiting)
        assert stored is not None and stored.state == "cancelled"
        events = await b.http.get(
            "/api/v1/events", params={"type": "device_decommissioned", "dev_eui": BINS[2]}
        )
        assert len(events.json()["events"]) == 1, events.text
    finally:
        await a.stop()
        await b.stop()


async def test_no_commit_between_a_refusal_and_its_drop(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """The store puts a refused batch's writes back with what was staged since; the flush that
    took it waits for the flush lock to drop them. An API change holding the lock then and
    waiting for that commit to end must not commit the refused writes with its own (they
    would be stored without their batch's acknowledgements and events): it drops them and
    makes its change again. Constructed: the refusal waits until the change waits."""
    a, b, _, _ = await _pair(mosquitto_broker, tmp_path, postgres_url)
    gw = a.gateway
    entered, release = asyncio.Event(), asyncio.Event()
    refused: list[Any] = []

    async def hold() -> None:
        entered.set()
        await release.wait()

    try:
        for dev in BINS[3:5]:
            assert (await a.http.put(f"/api/v1/devices/{dev}", json={"kind": "bin"})).is_success
        refuse_commits(gw, refused, lambda batch: BINS[3] in batch.devices, hold=hold)
        gw.upsert_device(BINS[3], {"name": "refused"})
        flushing = asyncio.ensure_future(gw.flush())
        await asyncio.wait_for(entered.wait(), 10)
        changing = asyncio.ensure_future(
            gw.change_committed(BINS[4], lambda: gw.upsert_device(BINS[4], {"name": "kept"}))
        )
        # made, so it now waits for the refused commit to end (no await in between)
        await wait_for(lambda: gw.devices[BINS[4]].name == "kept", "the change made", 10)
        release.set()
        await asyncio.wait_for(asyncio.gather(flushing, changing), 10)
        first, _ = await b.gateway.store.load_device(BINS[3])
        second, _ = await b.gateway.store.load_device(BINS[4])
        assert first is not None and first.name != "refused"
        assert second is not None and second.name == "kept"
        assert gw.devices[BINS[3]].name != "refused"  # read back after the drop
    finally:
        await a.stop()
        await b.stop()


async def test_a_pushed_uplink_in_a_refused_batch_is_stored_before_the_answer(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """OS2iot's HTTP push (gateway/os2iot.py) has no broker to send an uplink again: when the
    store refuses the batch holding it, the gateway processes it again before it answers 200
    (stored once); refused every time, 503 ``store_unavailable`` and the data target's retry
    stores it once."""
    from gateway.service import API_ATTEMPTS

    os2iot, push = os2iot_push(tmp_path)
    (a,), app, _ = await _instances(mosquitto_broker, tmp_path, postgres_url, ("a",), os2iot=os2iot)
    refused: list[Any] = []

    def uplink(f_cnt: int) -> bytes:
        _, data = codec.encode(
            "bin_status", {"fill_percent": 10 + f_cnt, "temperature_c": 9, "battery_percent": 80}
        )
        return ev.dumps(ev.up(app, BINS[5], f_cnt=f_cnt, f_port=10, data=data))

    async def stored() -> list[int]:
        rows = (await a.http.get(f"/api/v1/devices/{BINS[5]}/uplinks")).json()["uplinks"]
        return sorted(int(r["f_cnt"]) for r in rows)

    try:
        assert (await a.http.put(f"/api/v1/devices/{BINS[5]}", json={"kind": "bin"})).is_success
        refuse_commits(a.gateway, refused, lambda batch: bool(batch.uplinks))
        answer = await a.http.post("/api/v1/ingest/os2iot", content=uplink(1), headers=push)
        assert answer.status_code == 200, answer.text
        assert refused == [a.gateway.store]
        assert await stored() == [1]

        refused.clear()
        refuse_commits(a.gateway, refused, lambda batch: bool(batch.uplinks), times=API_ATTEMPTS)
        answer = await a.http.post("/api/v1/ingest/os2iot", content=uplink(2), headers=push)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "store_unavailable"
        assert len(refused) == API_ATTEMPTS and await stored() == [1]
        again = await a.http.post("/api/v1/ingest/os2iot", content=uplink(2), headers=push)
        assert again.status_code == 200, again.text
        assert await stored() == [1, 2]
        assert a.counter("processed") == 2
    finally:
        await a.stop()


async def test_a_refused_batch_leaves_no_auto_registration_behind(
    mosquitto_broker: Broker, tmp_path: Path, postgres_url: str
) -> None:
    """A device auto-registered by a batch the store refuses is gone with the batch, and so is
    its place under ``[fleet] max_auto_registered``: with a cap of 2, the refused device's
    redelivery and one more unknown device are both let in."""
    (a,), app, _ = await _instances(
        mosquitto_broker, tmp_path, postgres_url, ("a",), fleet={"max_auto_registered": 2}
    )
    refused: list[Any] = []
    unknown = ["b0b0000000000001", "b0b0000000000002"]
    try:
        refuse_commits(a.gateway, refused, lambda batch: bool(batch.uplinks))

        async def stored() -> int:
            return int((await a.http.get("/api/v1/stats")).json()["uplinks_stored"])

        async with mqtt_client(mosquitto_broker) as (client, _):
            for n, dev in enumerate(unknown, start=1):
                _, data = codec.encode(
                    "bin_status", {"fill_percent": 10, "temperature_c": 9, "battery_percent": 80}
                )
                doc = ev.up(app, dev, f_cnt=1, f_port=10, data=data)
                await client.publish(ev.topic(app, dev, "up"), ev.dumps(doc), qos=1)
                await wait_for(lambda n=n: _eq(stored, n), f"uplink {n} stored", 30)
        assert refused == [a.gateway.store]
        assert sorted(d for d, x in a.gateway.devices.items() if not x.registered) == unknown
        assert read(a.gateway.metrics.unknown_rejected, reason="unknown_device_cap") == 0
        assert a.counter("processed") == 2
    finally:
        await a.stop()
