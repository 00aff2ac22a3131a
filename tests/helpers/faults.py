"""Helpers for the fault, fuzz and security tests (issue 8).

- :func:`mutated`: a hypothesis strategy of byte strings derived from a valid seed (bit flips,
  byte replacement, truncation, insertion, duplication): the inputs most likely to reach deep
  into a decoder, next to purely random ones.
- :func:`bounded_growth`: how much memory a loop of calls keeps (tracemalloc), so a test can say
  that a decoder fed thousands of hostile inputs does not grow.
- :func:`run_gateway_process` / :class:`GatewayProcess`: the real `citypack gateway run` as a
  subprocess (so a test can ``kill -9`` it), with its JSON log captured to a file.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis.strategies as st

from tests.helpers.procs import ROOT, free_port


@st.composite
def mutated(draw: st.DrawFn, seeds: Iterable[bytes], max_edits: int = 4) -> bytes:
    """A seed byte string with up to ``max_edits`` random edits."""
    pool = list(seeds)
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, max_edits))):
        op = draw(st.sampled_from(("flip", "set", "cut", "insert", "dup", "drop")))
        if op == "insert" or not data:
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
            continue
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at]
    return bytes(data)


def bounded_growth(call: Callable[[int], Any], rounds: int) -> int:
    """Bytes still allocated after ``rounds`` calls of ``call(i)`` beyond a warmed-up baseline."""
    for i in range(min(rounds, 50)):  # warm caches (regex, imports, interned strings)
        call(i)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(rounds):
            call(i)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


# --- the gateway as a process -----------------------------------------------------------------


@dataclass
class GatewayProcess:
    """`citypack gateway run --config FILE` as a child process, JSON log lines in ``log_path``."""

    config_path: Path
    log_path: Path
    api_port: int
    token: str
    process: subprocess.Popen[bytes] | None = None
    # RLIMIT_NOFILE for the child, soft and hard (as a service started without LimitNOFILE)
    max_open_files: int | None = None
    # log through a pipe this process copies to ``log_path`` (as journald takes a service's
    # output), so a limit on the child's file sizes leaves its log whole (test_store_full.py)
    log_pipe: bool = False
    _copier: threading.Thread | None = None

    def _limits(self) -> None:
        import resource

        if self.max_open_files is not None:
            limit = self.max_open_files
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the process and return once its ``/healthz`` says ``ok`` (store open, every
        route served); see :meth:`wait_started`."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed right after Popen dups it
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "gateway", "run", "--config",
                 str(self.config_path)],
                stdout=subprocess.PIPE if self.log_pipe else log,
                stderr=subprocess.STDOUT if self.log_pipe else log,
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("CITYPACK_")},
                preexec_fn=self._limits if self.max_open_files is not None else None,
            )  # fmt: skip
        finally:
            log.close()
        if self.log_pipe:
            self._copier = threading.Thread(target=self._copy_log, daemon=True)
            self._copier.start()
        # a bound, not a speed: a start-up on two cores busy with other gateways, PostgreSQL
        # and the test itself once took longer than 30 s
        self.wait_started(timeout_s)

    def _copy_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.process.stdout as pipe, open(self.log_path, "ab", buffering=0) as log:
            for line in pipe:
                log.write(line)

    def wait_started(self, timeout_s: float) -> None:
        """Poll ``/healthz`` until it says ``ok`` (the API answers ``starting`` while the store
        opens). A process that exits first fails here at once with its exit code and the end of
        its log: a gateway that refused its config used to look like one that never listened,
        after the whole bound (the fleet test's 16-character token, refused since issue 14)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        seen = "nothing listens"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(
                    f"{self.config_path}: the gateway exited with {code} while starting: "
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    seen = str(json.loads(response.read()).get("status"))
            except (OSError, ValueError) as exc:
                seen = f"{type(exc).__name__}: {exc}"
            if seen == "ok":
                return
            time.sleep(0.05)
        raise AssertionError(
            f"{self.config_path}: not started after {timeout_s} s (/healthz: {seen}): "
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 8) -> str:
        return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def freeze(self) -> None:
        """SIGSTOP: the process stays where it is (mid-commit or not) until killed or thawed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """``kill -9``: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._join_log()

    def terminate(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._join_log()
        return self.process.returncode

    def _join_log(self) -> None:
        if self._copier is not None:
            self._copier.join(timeout=10)  # the pipe ends with the process: all of it copied

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                doc = {"msg": line}
            if isinstance(doc, dict):
                out.append(doc)
        return out


def gateway_config(
    directory: Path,
    broker_url: str,
    *,
    application_id: str,
    base_topic: str,
    token: str = "fault-test-token-0123456789abcdefghij",
    extra: str = "",
    maintenance_s: float = 3600.0,
    mqtt_extra: str = "",
    store_url: str | None = None,
) -> GatewayProcess:
    """Write a config and token file for a gateway subprocess on a free API port (its store
    ``gateway.db`` in ``directory`` unless ``store_url`` names another)."""
    port = free_port()
    token_file = directory / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = directory / "gateway.toml"
    config.write_text(
        "[mqtt]\n"
        f'url = "{broker_url}"\n'
        f'client_id = "gw-{base_topic}"\n'
        f'application_id = "{application_id}"\n'
        "reconnect_min_s = 0.1\n"
        "reconnect_max_s = 1.0\n" + mqtt_extra + "[store]\n"
        f'url = "{store_url or "sqlite:///" + str(directory / "gateway.db")}"\n'
        "[api]\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'token_file = "{token_file}"\n'
        "[publish]\n"
        f'base_topic = "{base_topic}"\n'
        "[web]\nenabled = false\n"
        f"[commands]\ncheck_interval_s = {maintenance_s}\n"
        f"[availability]\ncheck_interval_s = {maintenance_s}\n" + extra
    )
    return GatewayProcess(config, directory / "gateway.log", port, token)


def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll until ``predicate()`` is truthy (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(
        f"timed out waiting for {what}" + (f": {last_error}" if last_error else "")
    )


# --- ChirpStack's side of MQTT -------------------------------------------------------------------


def uplink_stream(app: str, devices: list[str], count: int, *, start_f_cnt: int = 1) -> list[Any]:
    """``count`` ChirpStack ``up`` events (JSON) round-robin over ``devices``, unique dedup ids
    and increasing fCnts: ``[(topic, payload, deduplication_id), ...]``."""
    import uuid

    from protocol import codec
    from tests.gateway.events import dumps, up

    out = []
    for i in range(count):
        dev = devices[i % len(devices)]
        f_cnt = start_f_cnt + i // len(devices)
        _, data = codec.encode(
            "bin_status",
            {"fill_percent": i % 101, "temperature_c": 10 + i % 20, "battery_percent": 85},
        )
        dedup = str(uuid.uuid4())
        doc = up(app, dev, f_cnt=f_cnt, f_port=10, data=data, dedup=dedup)
        out.append((f"application/{app}/device/{dev}/event/up", dumps(doc), dedup))
    return out


async def publish_uplinks(broker: Any, items: list[tuple[str, bytes, str]]) -> None:
    """ChirpStack's side: ``items`` (from :func:`uplink_stream`) published at QoS 1, in order,
    on one connection to ``broker`` (a :class:`tests.helpers.procs.Broker`)."""
    import uuid

    import aiomqtt

    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"cs-{uuid.uuid4().hex[:8]}"
    ) as chirpstack:
        for topic, payload, _ in items:
            await chirpstack.publish(topic, payload, qos=1)


@asynccontextmanager
async def chirpstack_client(
    broker: Any,
    app: str,
    downlinks: list[dict[str, Any]],
    on_downlink: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncIterator[Any]:
    """ChirpStack's side of MQTT while the block runs: an aiomqtt client on ``broker`` (to
    publish uplinks with), and every ``command/down`` of application ``app`` the gateway hands
    to ChirpStack's queue appended to ``downlinks`` (its JSON), then given to ``on_downlink``
    (ChirpStack's and the node's answers to it, for a test that plays them). If that side
    stopped early (a downlink it could not read, ``on_downlink`` raising), the block fails."""
    import asyncio
    import uuid

    import aiomqtt

    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"cs-{uuid.uuid4().hex[:8]}"
    ) as chirpstack:
        await chirpstack.subscribe(f"application/{app}/device/+/command/down", qos=1)

        async def collect() -> None:
            async for message in chirpstack.messages:
                assert isinstance(message.payload, bytes)
                doc = json.loads(message.payload)
                downlinks.append(doc)
                if on_downlink is not None:
                    on_downlink(doc)

        collector = asyncio.create_task(collect())
        try:
            yield chirpstack
        finally:
            collector.cancel()
            (ended,) = await asyncio.gather(collector, return_exceptions=True)
            if isinstance(ended, Exception):  # not the cancel: it stopped early
                raise AssertionError("ChirpStack's side stopped early") from ended


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    """A gateway process's ``/readyz``: its status code and body."""
    import httpx

    response = httpx.get(f"{url}/readyz", timeout=30)
    return response.status_code, response.json()


def stored_dedup_ids(db: Path) -> list[str]:
    """Every stored uplink's deduplicationId (read-only connection; WAL lets it read)."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in con.execute("SELECT deduplication_id FROM uplinks")]
    finally:
        con.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# --- TLS broker ----------------------------------------------------------------------------------


@dataclass
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path  # a CA that signed nothing the broker presents


def make_certificates(directory: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(k, hashes.SHA256())
        )
        return k, cert

    ca_key, ca_cert = ca("citypack test CA")
    _, other_cert = ca("someone else's CA")
    server_key = key()
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(
        directory / "ca.pem", directory / "server.pem", directory / "server.key",
        directory / "other-ca.pem",
    )  # fmt: skip
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca.write_bytes(other_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.server_key.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def start_tls_mosquitto(directory: Path, tls: TlsFiles, users: dict[str, str], acl: str) -> Any:
    """mosquitto with only a TLS listener, a password file (mosquitto_passwd) and an ACL file."""
    from tests.helpers.procs import find_program, launch_mosquitto

    binary = find_program("mosquitto")
    passwd_tool = find_program("mosquitto_passwd")
    if binary is None or passwd_tool is None:
        raise RuntimeError("mosquitto and mosquitto_passwd are needed")
    passwd = directory / "passwd"
    passwd.write_text("")
    for user, password in users.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True, timeout=30)
    (directory / "acl").write_text(acl)
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        f"cafile {tls.ca}",
        f"certfile {tls.server_cert}",
        f"keyfile {tls.server_key}",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {directory / 'acl'}",
        "persistence false",
    ]
    return launch_mosquitto(binary, directory, port, lines)
