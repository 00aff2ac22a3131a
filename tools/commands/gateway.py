"""`citypack gateway run --config FILE`, `citypack gateway check-config FILE` and
`citypack gateway migrate-store --from sqlite:///… --to postgresql://…`."""

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
    move = gsub.add_parser(
        "migrate-store",
        help="copy a SQLite store into PostgreSQL (idempotent; refuses a non-empty target)",
    )
    move.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:///path")
    move.add_argument(
        "--to", dest="target", required=True, metavar="URL", help="postgresql://user@host:port/db"
    )
    move.add_argument(
        "--password-file",
        default="",
        metavar="FILE",
        help="the PostgreSQL password (else libpq's PGPASSWORD or ~/.pgpass)",
    )
    move.add_argument(
        "--into-nonempty",
        action="store_true",
        help="merge into a database that already holds fleet data (a device on both sides "
        "keeps the target's row)",
    )
    move.set_defaults(func=migrate_store)


def check_config(args: argparse.Namespace) -> int:
    from gateway.preflight import preflight

    try:
        checked = preflight(args.file)  # the checks `run` makes before its first socket
    except GatewayError as exc:
        raise CliError(str(exc)) from None
    cfg = checked.config
    store = f"{cfg.store.url.split('://')[0]} {checked.store_location}"
    if checked.store.shared:  # PostgreSQL: what `run` would say at start, said here in one line
        from gateway.store.postgres import PostgresStore

        assert isinstance(checked.store, PostgresStore)
        try:
            store += f" ({asyncio.run(checked.store.check())})"
        except GatewayError as exc:
            raise CliError(str(exc), exit_code=1) from None
    print(
        f"ok: {args.file}: mqtt {cfg.mqtt.url} ({cfg.mqtt.marshaler}, qos {cfg.mqtt.qos}), "
        f"store {store}, api {cfg.api.listen}"
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
        if isinstance(first, GatewayError):  # the store did not open (it opens in the group)
            raise CliError(str(first), exit_code=1) from None
        raise CliError(f"gateway failed: {type(first).__name__}: {first}", exit_code=1) from None
    return 0


def migrate_store(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gateway.store.migrate import migrate_store as copy_store
    from gateway.store.postgres import redacted_url

    with Progress(
        TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn(), transient=False
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=total)
            bar.update(tasks[table], completed=done)

        try:
            report = asyncio.run(
                copy_store(
                    args.source,
                    args.target,
                    into_nonempty=args.into_nonempty,
                    password_file=args.password_file,
                    progress=progress,
                )
            )
        except GatewayError as exc:
            raise CliError(str(exc), exit_code=1) from None
    copied = ", ".join(f"{table} {count}" for table, count in report.copied.items())
    already = sum(report.already.values())
    note = f"; {already} row(s) were there already" if already else ""
    again = " (resumed an earlier copy)" if report.resumed else ""
    print(f"ok: copied into {redacted_url(args.target)}{again}: {copied}{note}")
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
