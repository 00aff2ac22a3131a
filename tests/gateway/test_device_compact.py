"""A device's dicts packed between messages (Device.compact, gateway/store/base.py, issue 17):
what every reader sees does not change, and the packed form is smaller."""

from __future__ import annotations

import json
import sys
import threading
from array import array

from gateway.store import SqliteStore
from gateway.store.base import _PACKED, Device, device_from_row


def _bin(eui: str = "a840410000000001", fill: int = 40) -> Device:
    return Device(
        dev_eui=eui,
        kind="bin",
        name="bin-1",
        reported={"fill_percent": fill, "temperature_c": 15, "battery_percent": 80},
        derived={"_samples": array("d", [1.0, 2.0]), "fill_percent": fill, "full": False},
        neighbours=["a840410000000002"],
        created_at=1.0,
        updated_at=2.0,
    )


def _raw(device: Device, name: str) -> object:
    """The slot as stored, without unpacking."""
    (packed,) = [p for p in _PACKED if p.slot.__name__ == name]
    return packed.slot.__get__(device)


def test_compact_changes_nothing_a_reader_sees() -> None:
    device = _bin()
    twin, doc, digest = device.twin_json(), device.to_json(), device.registry_digest()
    registry = device.registry_doc()
    device.compact()
    assert type(_raw(device, "reported")) is tuple and type(_raw(device, "neighbours")) is tuple
    assert device.registry_digest() == digest
    assert type(_raw(device, "neighbours")) is tuple  # the digest did not unpack it
    assert device.twin_json() == twin
    assert device.to_json() == doc
    assert device.registry_doc() == registry
    assert list(device.reported) == ["fill_percent", "temperature_c", "battery_percent"]
    assert device == _bin()


def test_a_change_after_a_read_stays_on_the_device() -> None:
    device = _bin()
    device.compact()
    derived = device.derived  # unpacked once, kept
    assert device.derived is derived
    derived["full"] = True
    device.reported.update({"fill_percent": 90, "tilt": False})
    device.desired["bin_config"] = {"full_threshold_percent": 70}
    device.neighbours.append("a840410000000003")
    device.compact()
    assert device.derived["full"] is True
    assert device.reported == {
        "fill_percent": 90,
        "temperature_c": 15,
        "battery_percent": 80,
        "tilt": False,
    }
    assert device.desired == {"bin_config": {"full_threshold_percent": 70}}
    assert device.neighbours == ["a840410000000002", "a840410000000003"]


def test_packed_is_smaller_and_shares_keys_and_empties() -> None:
    one, two = _bin("a840410000000001", 40), _bin("a840410000000002", 55)
    one.desired, two.desired = {}, {}
    size = sys.getsizeof(one.reported)
    one.compact()
    two.compact()
    packed_one, packed_two = _raw(one, "reported"), _raw(two, "reported")
    assert isinstance(packed_one, tuple) and isinstance(packed_two, tuple)
    assert packed_one[-1] is packed_two[-1]  # one keys tuple for the shape
    assert sys.getsizeof(packed_one) < size
    assert _raw(one, "desired") is _raw(two, "desired")  # the one empty dict
    assert two.reported["fill_percent"] == 55


def test_loaded_devices_are_packed_and_the_service_batch_packs() -> None:
    device = device_from_row(
        "a840410000000001",
        "bin",
        {"name": "bin-1", "neighbours": [], "report_interval_s": 900},
        {"reported": {"fill_percent": 40}, "derived": {}, "desired": {}},
    )
    assert type(_raw(device, "reported")) is tuple
    assert _raw(device, "neighbours") == ()
    other = device_from_row("a840410000000002", "bin", {"report_interval_s": 900}, None)
    assert other.report_interval_s is device.report_interval_s  # one 900 for the fleet
    store = SqliteStore("sqlite:///:memory:")
    device.reported["fill_percent"] = 41
    store.stage_device(device)  # not the service's batch: left as it is
    assert type(_raw(device, "reported")) is dict
    store.stage_device(device, device.twin_json().decode())
    assert type(_raw(device, "reported")) is tuple
    assert device.reported == {"fill_percent": 41}


def test_a_read_on_another_thread_while_one_unpacks_gets_the_same_dict() -> None:
    """The SQLite writer thread reads a device's twin while the loop may read it too. One
    read is held inside the unpacking; a second read meanwhile must wait for it and get the
    dict it made, not make its own (one of the two would be lost with its changes)."""
    device = _bin()
    device.compact()
    (packed,) = [p for p in _PACKED if p.slot.__name__ == "reported"]
    real = packed.unpack
    calls: list[int] = []
    inside, go = threading.Event(), threading.Event()

    def held(value: tuple[object, ...]) -> object:
        calls.append(1)
        if len(calls) == 1:
            inside.set()
            go.wait(5)
        return real(value)

    seen: dict[str, object] = {}

    def read(name: str) -> None:
        seen[name] = device.reported

    packed.unpack = held
    try:
        first = threading.Thread(target=read, args=("first",))
        first.start()
        assert inside.wait(5)  # the first read is unpacking now
        second = threading.Thread(target=read, args=("second",))
        second.start()
        second.join(0.2)  # it waits for the first (or, unguarded, unpacks a second time)
        go.set()
        first.join(5)
        second.join(5)
    finally:
        packed.unpack = real
    assert len(calls) == 1
    assert seen["first"] is seen["second"] is device.reported


def test_a_fill_history_is_kept_compact_and_packing_leaves_it_alone() -> None:
    from gateway.rules import fill_history

    points = [[1772446542 + i * 900, (i * 3) % 90] for i in range(12)]
    device = _bin()
    history = device.derived["_samples"] = fill_history.pack(points)
    assert isinstance(history, fill_history.Packed) and len(history) == 12 * (4 + 1)
    assert sys.getsizeof(history) < sys.getsizeof(array("d", [0.0] * 24))
    twin = device.twin_json()
    device.compact()
    packed = _raw(device, "derived")
    assert isinstance(packed, tuple) and any(v is history for v in packed)  # not converted
    assert device.derived["_samples"] is history
    assert device.twin_json() == twin
    assert json.loads(twin)["derived"]["_samples"] == points


def test_histories_in_other_forms_go_through_packing_unchanged() -> None:
    for flat in ([1.5, 40.0], [1e10, 40.0], [-1.0, 40.0], [1.0, 1 / 3], [1.0]):
        device = _bin()
        device.derived["_samples"] = array("d", flat)
        device.compact()
        assert device.derived["_samples"] == array("d", flat)
    device = _bin()
    device.derived["_samples"] = [[1, 2]]  # as stored before packing (rules/fill_history.py)
    device.compact()
    assert device.derived["_samples"] == [[1, 2]]


def test_the_next_batch_packs_devices_a_reader_unpacked() -> None:
    """The dashboard's collection list reads every bin's derived: those devices are packed
    again at the next batch, not left unpacked until each reports."""
    read, staged = _bin("a840410000000001"), _bin("a840410000000002")
    read.compact()
    staged.compact()
    assert read.derived["full"] is False  # a reader (no change)
    assert type(_raw(read, "derived")) is dict
    store = SqliteStore("sqlite:///:memory:")
    staged.reported["fill_percent"] = 50
    store.stage_device(staged, staged.twin_json().decode())
    assert type(_raw(read, "derived")) is tuple and type(_raw(staged, "reported")) is tuple
    assert read.derived["full"] is False and staged.reported["fill_percent"] == 50


def test_the_registry_digest_is_a_small_int_and_still_sees_a_change() -> None:
    """The store keeps one digest a device: 60 bits, an int of at most 32 bytes instead of the
    full hash's 36 (a 48-byte object in CPython's size classes; base.py ``_DIGEST_MASK``)."""
    devices = [Device(dev_eui=f"a8404100{i:08x}", kind="bin", name=f"bin-{i}") for i in range(500)]
    digests = [d.registry_digest() for d in devices]
    assert all(0 <= d < 1 << 60 and sys.getsizeof(d) <= 32 for d in digests)
    assert len(set(digests)) == len(digests)
    device = devices[0]
    device.street = "Vestergade"
    assert device.registry_digest() != digests[0]


def test_take_copies_every_field_and_keeps_the_packed_ones_packed() -> None:
    """The change feed's copy of a device another instance changed replaces the cached one in
    place (gateway/service.py ``adopt_device``): equal afterwards, still packed, and the
    dropped copy is not kept for the next batch's packing."""
    from gateway.store import base

    def stored() -> Device:  # the device as another instance committed it, read back
        newer = _bin(fill=70)
        registry = json.loads(json.dumps(newer.registry_doc()))
        return device_from_row(
            newer.dev_eui, "bin", registry, json.loads(newer.twin_json()), (12, "01f30001")
        )

    cached = _bin(fill=40)
    cached.compact()
    read, expected = stored(), stored()
    assert read.reported["fill_percent"] == 70  # a read unpacks: the copy is now registered
    assert id(read) in base._UNPACKED
    read.compact()
    base.compact_unpacked()
    _ = read.derived  # unpacked again, as a caller may have left it
    cached.take(read)
    assert id(read) not in base._UNPACKED
    assert type(_raw(cached, "reported")) is tuple  # taken as the copy held it
    assert cached == expected
    assert cached.twin_json() == expected.twin_json()
    assert cached.last_f_cnt == 12 and cached.last_dev_addr == "01f30001"


def test_json_loads_reads_what_the_standard_library_reads() -> None:
    """Stored documents are read with msgspec, and what it refuses with ``json.loads``: the
    same result either way (gateway/store/base.py ``json_loads``)."""
    from gateway.store.base import json_loads

    for text in (
        '{"a":1,"b":[1.5,-0.0,null,true],"c":{"d":"é"}}',
        '{"latitude":NaN,"x":Infinity}',  # what the json module wrote before json_dumps
        "1e400",  # out of msgspec's range
        '"\\ud800"',  # a lone surrogate
        "123456789012345678901234567890",
        '{"a":1,"a":2}',
    ):
        theirs = repr(json.loads(text))
        assert repr(json_loads(text)) == theirs, text
        assert repr(json_loads(text.encode())) == theirs, text


def test_json_dumps_reads_back_as_the_standard_library_wrote() -> None:
    """Stored documents are written with msgspec (gateway/store/base.py ``json_dumps``): read
    back, the same values as ``json.dumps(value, default=str)`` gave, a packed fill history as
    its points, and NaN (which JSON has no word for) as null instead of the standard library's
    invalid ``NaN``."""
    from gateway.rules import fill_history
    from gateway.store.base import json_dumps, json_loads

    history = fill_history.pack([(1_764_000_000.0, 40.0), (1_764_003_600.0, 45.0)])
    for value in (
        {"name": "Søndergade 1", "neighbours": ["a", "b"], "latitude": 56.15, "n": None},
        {"fill_percent": 42, "temperature_c": -3.5, "fire": False, "tags": ("x", 1)},
        {"nested": {"deep": [1, 2.25, {"k": "\u00e9\u2603"}]}, "big": 2**63},
        [],
        "text",
    ):
        assert json_loads(json_dumps(value)) == json.loads(json.dumps(value, default=str))
    assert json_loads(json_dumps({"h": history})) == {"h": fill_history.plain(history)}
    assert json_loads(json_dumps({"x": float("nan")})) == {"x": None}
    assert "\\u" not in json_dumps({"street": "Åboulevarden"})  # UTF-8, not escapes
    lone = {"name": "a\ud800b"}  # msgspec refuses it; the json module escapes it
    assert json_loads(json_dumps(lone)) == lone
