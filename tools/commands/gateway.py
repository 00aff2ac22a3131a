"""`citypack gateway run --config FILE` and `citypack gateway check-config FILE`."""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from gateway.errors import GatewayError
from tools.errors import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "gateway", help="the gateway service: ChirpStack MQTT events in, fleet state and commands"
    )
    gsub = parser.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    run = gsub.add_parser("run", help="run the gateway until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, metavar="FILE", help="gateway TOML config")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=run_gateway)
    check = gsub.add_parser("check-config", help="validate a gateway config file")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=check_config)


def check_config(args: argparse.Namespace) -> int:
    from gateway.preflight import preflight

    try:
        checked = preflight(args.file)  # the checks `run` makes before its first socket
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    cfg = checked.config
    print(
        f"ok: {args.file}: mqtt {cfg.mqtt.url} ({cfg.mqtt.marshaler}, qos {cfg.mqtt.qos}), "
        f"store {cfg.store.url.split('://')[0]} {checked.store_location}, api {cfg.api.listen}"
    )
    return 0


def run_gateway(args: argparse.Namespace) -> int:
    from gateway.logs import configure, loop_exception_handler, quiet_logger
    from gateway.preflight import preflight
    from gateway.service import Gateway

    try:
        # the same checks as check-config, and the broker's TLS certificate: a bad one stops
        # the start, not an endless reconnect
        checked = preflight(args.config, connect=True)
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    cfg, token = checked.config, checked.api_token
    logger = configure(args.log_level)
    _raise_file_limit()
    if cfg.api.enabled and not token:
        logger.warning("api.token_file is not set: every /api/v1 request will get 401")

    async def main() -> None:
        gateway = Gateway(cfg, logger=logger, api_token=token, store=checked.store)
        loop = asyncio.get_running_loop()
        # one JSON line per problem, a few a second at most (a refused accept() repeats fast)
        loop.set_exception_handler(loop_exception_handler(quiet_logger("loop")))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.stop)
        try:
            await gateway.run()
        finally:
            await gateway.close()

    try:
        asyncio.run(main())
    except GatewayError as exc:
        raise CliError(str(exc), exit_code=1) from None
    except OSError as exc:
        raise CliError(f"cannot start: {exc}", exit_code=1) from None
    except ExceptionGroup as group:  # a task of the service failed: name the first cause
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise CliError(f"gateway failed: {type(first).__name__}: {first}", exit_code=1) from None
    return 0


def _raise_file_limit(wanted: int = 65_536) -> None:
    """Take the soft limit on open files up to the hard one (at most ``wanted``): each API and
    MQTT connection is a file handle, and 1,024 is a common default (deploy/ sets
    ``LimitNOFILE=65536``; this covers a start without systemd)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
