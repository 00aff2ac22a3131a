"""Node start-up: read config and keys, build the HAL, the MAC and the app, then run it.

``config.json["kind"]`` picks the app (``bin`` or ``lamp``), ``config.json["board"]`` the pin map
(``heltec_v3`` or ``ttgo_lora32``, a module of ``firmware/boards``), ``config.json["app"]`` the
app's settings (see firmware/README.md, "The apps"). :func:`build_app` is the part the host
runs too (bench, fleet simulator): it takes the HAL objects instead of making them.
"""

import asyncio


def build_app(
    kind, app_cfg, board, link, clock, pins, power, rtc, nvs, lat=0.0, lon=0.0, version=None
):
    """The app object for ``kind`` on ``board``; ``await app.run()`` runs it for ever."""
    from apps.node import Node

    node = Node(link, clock, kind, getattr(board, "HARDWARE", "esp32"), version=version)
    if kind == "bin":
        from apps.bin_node import BinNode, build_sensors

        sensors = build_sensors(pins, board, app_cfg, clock)
        return BinNode(node, clock, power, rtc, nvs, sensors, app_cfg)
    if kind == "lamp":
        from apps.lamp_node import LampNode, build_hardware

        hw = build_hardware(pins, board, app_cfg, clock)
        return LampNode(node, clock, power, nvs, hw, app_cfg, lat, lon)
    raise ValueError("unknown node kind %r" % (kind,))


def main(root="/"):
    import nodeconfig
    from apps.maclink import MacLink
    from hal.clock import RealClock
    from hal.pins import Pins, Power
    from hal.storage_esp32 import NvsStore, RtcStore
    from lorawan.mac import Mac

    cfg = nodeconfig.load(root)
    board = __import__("boards." + cfg.board, None, None, ["PINS"])
    clock = RealClock()
    pins = Pins(board)
    vext = board.PINS.get("vext")
    if vext is not None:
        pins.output(vext, 0)  # Heltec: sensor rail on (active low) while awake
    rtc, nvs = RtcStore(), NvsStore("citypack")
    mac = Mac(
        board.radio(), clock, nvs, rtc, region=cfg.region,
        dev_eui=nodeconfig.eui_bytes(cfg.dev_eui), join_eui=nodeconfig.eui_bytes(cfg.join_eui),
        app_key=cfg.app_key,
    )  # fmt: skip
    abp = None
    if cfg.activation == "abp":
        abp = (int(cfg.dev_addr, 16), cfg.nwk_s_key, cfg.app_s_key)
    # wait out a duty-cycle off-time (up to 2 min) rather than drop an alarm or a report
    link = MacLink(mac, clock, max_wait_ms=120_000, activation=cfg.activation, abp=abp)
    import fwslot
    from apps.node import FIRMWARE_VERSION

    version = fwslot.version(root, FIRMWARE_VERSION)
    app = build_app(
        cfg.kind, cfg.app, board, link, clock, pins, Power(), rtc, nvs, cfg.latitude,
        cfg.longitude, version,
    )  # fmt: skip
    asyncio.run(_run(app, mac, clock, nvs, cfg, root, version))


async def _run(app, mac, clock, nvs, cfg, root, version):
    if cfg.fuota_public_key is not None and cfg.app_key is not None:
        import machine
        from fuota.agent import Agent

        agent = Agent(
            mac, clock, nvs, cfg.app_key, cfg.fuota_public_key, root=root,
            running_version=version, max_wait_ms=120_000, reboot=machine.reset,
        )  # fmt: skip
        app.node.port_handler = agent.handle
        # the new set has come up once the network heard the app (fwslot boot counter)
        agent.confirm_when(lambda: app.node.uplinks_sent > 0)
        task = asyncio.create_task(agent.run())  # runs as long as the app
        await app.run()
        task.cancel()
        return
    await app.run()


if __name__ == "__main__":
    main()
