"""`citypack frame decode`: a LoRaWAN 1.0.x frame inspector (issue 2 §5).

``citypack frame decode [--json] HEX|- [--nwkskey K] [--appskey K] [--appkey K] [--fcnt-msb N]``

Prints every field of a PHYPayload, checks the MIC where the key is given, decrypts the
FRMPayload where the key is given, and decodes the citypack application message when the fPort
is one of ours (:func:`protocol.codec.decode`). ``-`` reads one frame per line from stdin
and prints one result per line (JSON lines with ``--json``); a bad line prints an error for that
line (``{"line": N, "error": "..."}``) and the others still decode; the exit code is then 2.
A line is hex, or an air-capture JSON object with a ``phy`` key (``citypack netsim --capture``);
blank lines and ``#`` comments are skipped. In a stream, a Join-Accept decrypted with
``--appkey`` after a verified Join-Request gives that session's keys (``session_keys_derived``),
so the data frames of that DevAddr that follow decrypt and verify without
``--nwkskey``/``--appskey``.

JSON keys (stable for scripts):

- every frame: ``mtype`` (``join_request``, ``join_accept``, ``unconfirmed_data_up``,
  ``unconfirmed_data_down``, ``confirmed_data_up``, ``confirmed_data_down``), ``direction``
  (``up``/``down``), ``size``, ``dev_addr`` (hex MSB-first, null where the frame has none or
  it is encrypted), ``fcnt``, ``fport`` (null when absent), ``mic`` (hex), ``mic_ok`` (null when
  no key was given), ``frm_payload`` (hex: decrypted where the key is known, else as on the air,
  null for joins);
- data frames: ``fcnt16`` (the on-air bits), ``fctrl`` ``{adr, adr_ack_req, ack, class_b,
  f_pending, fopts_len}``, ``fopts`` (hex), ``mac_commands`` (list of ``{"command", "cid",
  ...fields}``, null when they are in an FPort 0 payload and the NwkSKey is missing),
  ``frm_payload_decrypted`` (bool), ``message`` (``{"message": NAME, "fields": {...}}`` or null)
  and ``message_error`` (why our fPort's payload did not decode, else null);
- ``join_request``: ``join_eui``, ``dev_eui`` (hex MSB-first), ``dev_nonce`` (integer);
- ``join_accept``: ``decrypted`` (bool); with ``--appkey`` also ``join_nonce``, ``net_id``,
  ``dev_addr``, ``dl_settings`` (the octet), ``rx1_dr_offset``, ``rx2_data_rate``,
  ``rx_delay``, ``cflist`` (``{"type": 0, "frequencies_hz": [...]}``, ``{"type": 1,
  "ch_masks": [...], "channels": [...]}`` or null) and ``cflist_hz`` (the type 0 frequencies as
  in ``protocol/vectors/lorawan.json``, else null).

FCnt: only 16 bits travel on the air; the MIC and the cipher use 32. ``--fcnt-msb N`` gives the
16 high bits to assume (default 0), so a frame after a 16-bit rollover still verifies.
Keys are never printed, not even in error messages.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from protocol.errors import DecodeError, MICError, ProtocolError
from protocol.lorawan import (
    AESKey,
    CFListChannelMask,
    CFListFrequencies,
    DataFrame,
    EncryptedJoinAccept,
    JoinRequest,
    MACCommandError,
    PHYPayload,
    SessionKeys,
)
from tools.errors import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "frame",
        help="inspect LoRaWAN frames (fields, MIC, decrypted payload, our message)",
        description="Inspect LoRaWAN 1.0.x PHYPayloads.",
    )
    frame_sub = parser.add_subparsers(dest="frame_command", metavar="ACTION", required=True)
    p = frame_sub.add_parser(
        "decode",
        help="decode a PHYPayload (hex), or one per line from stdin with -",
        description=(
            "Decode a LoRaWAN PHYPayload: every field, the MIC check and the decrypted payload "
            "where keys are given, and the citypack message on our fPorts. Keys are never printed."
        ),
    )
    p.add_argument("--json", action="store_true", help="print JSON (JSON lines with -)")
    p.add_argument(
        "hex",
        metavar="HEX",
        nargs="+",
        help="the frame as hex (may be split into several words), or - to read one per line",
    )
    p.add_argument("--nwkskey", metavar="K", help="NwkSKey (32 hex digits): MIC, FPort 0")
    p.add_argument("--appskey", metavar="K", help="AppSKey (32 hex digits): FRMPayload")
    p.add_argument("--appkey", metavar="K", help="AppKey (32 hex digits): Join-Request/Accept")
    p.add_argument(
        "--fcnt-msb",
        metavar="N",
        type=int,
        default=0,
        help="the 16 high bits of the 32-bit FCnt to assume (default 0)",
    )
    p.set_defaults(func=cmd_decode)


class _Keys:
    """The keys from the command line, and session keys learnt from joins in the stream."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.nwk = _key(args.nwkskey, "--nwkskey")
        self.app = _key(args.appskey, "--appskey")
        self.root = _key(args.appkey, "--appkey")
        self.last_dev_nonce: int | None = None  # of the last Join-Request whose MIC verified
        self.sessions: dict[int, SessionKeys] = {}  # DevAddr -> keys derived from a join

    def session(self, dev_addr: int) -> tuple[AESKey | None, AESKey | None]:
        learnt = self.sessions.get(dev_addr)
        if learnt is None:
            return self.nwk, self.app
        return self.nwk or learnt.nwk_s_key, self.app or learnt.app_s_key


def _key(text: str | None, option: str) -> AESKey | None:
    if text is None:
        return None
    try:
        return AESKey.from_hex(text, option)
    except DecodeError:
        raise CliError(f"{option} must be 32 hex digits (16 bytes)") from None


def _line_bytes(line: str) -> bytes:
    """A stdin line: hex, or an air-capture JSON object (``{"phy": hex, ...}``)."""
    if line.lstrip().startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise CliError("line is neither hex nor a JSON object") from None
        if not isinstance(record, dict) or not isinstance(record.get("phy"), str):
            raise CliError('a JSON line needs "phy" (the frame as hex)')
        return _frame_bytes(record["phy"])
    return _frame_bytes(line)


def _frame_bytes(text: str) -> bytes:
    """Hex as people paste it: spaces, ``:``/``-`` separators and a ``0x`` prefix allowed."""
    cleaned = "".join(text.split())
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    cleaned = cleaned.replace(":", "").replace("-", "")
    if not cleaned:
        raise CliError("empty frame: give the PHYPayload as hex")
    if len(cleaned) % 2:
        raise CliError(f"frame has an odd number of hex digits ({len(cleaned)})")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise CliError(f"frame is not valid hex: {text.strip()[:60]!r}") from None


def inspect(data: bytes, keys: _Keys, fcnt_msb: int = 0) -> dict[str, Any]:
    """Decode one PHYPayload into the JSON object `frame decode --json` prints."""
    frame = PHYPayload.from_bytes(data)
    out: dict[str, Any] = {
        "mtype": frame.mtype.json_name,
        "direction": "up" if frame.mtype.is_uplink else "down",
        "size": len(data),
        "dev_addr": None,
        "fcnt": None,
        "fport": None,
        "mic": data[-4:].hex(),
        "mic_ok": None,
        "frm_payload": None,
    }
    if isinstance(frame, DataFrame):
        _inspect_data(frame, keys, fcnt_msb, out)
    elif isinstance(frame, JoinRequest):
        out.update(
            join_eui=frame.join_eui.hex(),
            dev_eui=frame.dev_eui.hex(),
            dev_nonce=frame.dev_nonce,
            mic_ok=None if keys.root is None else frame.mic_ok(keys.root),
        )
        if out["mic_ok"]:
            keys.last_dev_nonce = frame.dev_nonce
    else:
        _inspect_join_accept(frame, keys, out)
    return out


def _inspect_data(frame: DataFrame, keys: _Keys, fcnt_msb: int, out: dict[str, Any]) -> None:
    fcnt = (fcnt_msb << 16) | frame.fcnt16
    nwk, app = keys.session(frame.dev_addr.value)
    fctrl = frame.fctrl
    out.update(
        dev_addr=frame.dev_addr.hex(),
        fcnt=fcnt,
        fcnt16=frame.fcnt16,
        fport=frame.fport,
        fctrl={
            "adr": fctrl.adr,
            "adr_ack_req": fctrl.adr_ack_req,
            "ack": fctrl.ack,
            "class_b": fctrl.class_b,
            "f_pending": fctrl.f_pending,
            "fopts_len": fctrl.fopts_len,
        },
        fopts=frame.fhdr.fopts.hex(),
        mic_ok=None if nwk is None else frame.mic_ok(nwk, fcnt),
        frm_payload=frame.frm_payload.hex() if frame.fport is not None else None,
        frm_payload_decrypted=False,
        mac_commands=None,
        message=None,
        message_error=None,
    )
    payload_key = frame.payload_key(nwk, app)
    plain: bytes | None = None
    if frame.fport is not None and payload_key is not None:
        plain = frame.decrypt(nwk_s_key=nwk, app_s_key=app, fcnt=fcnt)
        out.update(frm_payload=plain.hex(), frm_payload_decrypted=True)
    if frame.fport != 0 or nwk is not None:
        try:
            commands = frame.mac_commands(nwk_s_key=nwk, fcnt=fcnt, strict=False)
            out["mac_commands"] = [c.to_json() for c in commands]
        except MACCommandError as exc:
            out["mac_commands_error"] = exc.message
    if frame.fport is not None and frame.fport > 0:
        _decode_message(frame.fport, plain, out)


def _decode_message(fport: int, plain: bytes | None, out: dict[str, Any]) -> None:
    try:  # the codec is another part of the protocol package; the inspector works without it
        from protocol import catalogue, codec
    except Exception as exc:  # missing or broken: still show the frame, say why no message
        out["message_error"] = f"the payload codec is unavailable ({type(exc).__name__})"
        return
    if fport not in catalogue.BY_FPORT:
        return
    if plain is None:
        out["message_error"] = "payload is encrypted: give --appskey to decode it"
        return
    try:
        decoded = codec.decode(fport, plain, out["direction"])
    except ProtocolError as exc:
        out["message_error"] = exc.message
        return
    out["message"] = {"message": decoded.message, "fields": decoded.fields}


def _inspect_join_accept(frame: EncryptedJoinAccept, keys: _Keys, out: dict[str, Any]) -> None:
    out["decrypted"] = False
    if keys.root is None:
        return
    try:
        accept = frame.decrypt(keys.root)
    except MICError:
        # With a wrong AppKey the plaintext is noise: report the failed MIC, not the noise.
        out["mic_ok"] = False
        return
    out["mic"] = accept.mic.hex()
    out["mic_ok"] = True
    cflist: dict[str, Any] | None = None
    cflist_hz: list[int] | None = None
    if isinstance(accept.cflist, CFListFrequencies):
        cflist_hz = list(accept.cflist.frequencies_hz)
        cflist = {"type": 0, "frequencies_hz": cflist_hz}
    elif isinstance(accept.cflist, CFListChannelMask):
        cflist = {
            "type": 1,
            "ch_masks": list(accept.cflist.ch_masks),
            "channels": accept.cflist.enabled_channels(),
        }
    if keys.last_dev_nonce is not None:
        # A Join-Accept answers the Join-Request before it: derive that session's keys so the
        # data frames after it in the stream decrypt with --appkey alone (never printed).
        keys.sessions[accept.dev_addr.value] = accept.session_keys(keys.root, keys.last_dev_nonce)
        out["session_keys_derived"] = True
    out.update(
        decrypted=True,
        join_nonce=accept.join_nonce,
        net_id=accept.net_id.hex(),
        dev_addr=accept.dev_addr.hex(),
        dl_settings=accept.dl_settings.to_bytes()[0],
        rx1_dr_offset=accept.dl_settings.rx1_dr_offset,
        rx2_data_rate=accept.dl_settings.rx2_data_rate,
        rx_delay=accept.rx_delay,
        cflist=cflist,
        cflist_hz=cflist_hz,
    )


def _printable(data: bytes) -> str:
    if data and all(32 <= b < 127 for b in data):
        return f' "{data.decode("ascii")}"'
    return ""


def human(out: dict[str, Any]) -> str:
    """One readable line per frame."""
    parts = [out["mtype"]]
    mic = {None: "MIC not checked", True: "MIC OK", False: "MIC FAILED"}[out["mic_ok"]]
    if out["mtype"] == "join_request":
        parts += [
            f"JoinEUI {out['join_eui']}",
            f"DevEUI {out['dev_eui']}",
            f"DevNonce {out['dev_nonce']}",
            mic,
        ]
    elif out["mtype"] == "join_accept":
        if not out["decrypted"]:
            parts.append("encrypted (give --appkey)" if out["mic_ok"] is None else mic)
        else:
            cflist = out["cflist"]
            parts += [
                f"JoinNonce {out['join_nonce']}",
                f"NetID {out['net_id']}",
                f"DevAddr {out['dev_addr']}",
                f"RX1DROffset {out['rx1_dr_offset']}",
                f"RX2DR {out['rx2_data_rate']}",
                f"RxDelay {out['rx_delay']}",
                "CFList -"
                if cflist is None
                else f"CFList {json.dumps(cflist, separators=(',', ':'))}",
                mic,
            ]
    else:
        flags = [
            k for k in ("adr", "adr_ack_req", "ack", "class_b", "f_pending") if out["fctrl"][k]
        ]
        parts += [
            f"DevAddr {out['dev_addr']}",
            f"FCnt {out['fcnt']}",
            f"FPort {'-' if out['fport'] is None else out['fport']}",
            mic,
            f"FCtrl [{' '.join(f.upper() for f in flags)}]",
            f"FOpts {out['fopts'] or '-'}",
        ]
        if out["mac_commands"]:
            parts.append("MAC " + ", ".join(_mac_text(c) for c in out["mac_commands"]))
        if out.get("mac_commands_error"):
            parts.append(f"MAC error: {out['mac_commands_error']}")
        if out["frm_payload"] is not None:
            raw = bytes.fromhex(out["frm_payload"])
            state = "decrypted" if out["frm_payload_decrypted"] else "encrypted"
            parts.append(f"FRMPayload ({state}) {out['frm_payload'] or '-'}{_printable(raw)}")
        if out["message"] is not None:
            fields = json.dumps(out["message"]["fields"], separators=(",", ":"))
            parts.append(f"message {out['message']['message']} {fields}")
        elif out["message_error"]:
            parts.append(f"message error: {out['message_error']}")
    return "  ".join(parts)


def _mac_text(command: dict[str, Any]) -> str:
    args = ",".join(f"{k}={v}" for k, v in command.items() if k not in ("command", "cid"))
    return f"{command['command']}({args})"


def _emit(out: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(out, separators=(",", ":")) if as_json else human(out), flush=True)


def cmd_decode(args: argparse.Namespace) -> int:
    if not 0 <= args.fcnt_msb <= 0xFFFF:
        raise CliError("--fcnt-msb is the 16 high bits of FCnt: 0..65535")
    keys = _Keys(args)
    if args.hex != ["-"]:
        if "-" in args.hex:
            raise CliError("give either hex or - (stdin), not both")
        _emit(inspect(_frame_bytes("".join(args.hex)), keys, args.fcnt_msb), args.json)
        return 0
    bad = 0
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out = inspect(_line_bytes(line), keys, args.fcnt_msb)
        except (CliError, ProtocolError) as exc:
            bad += 1
            message = str(exc)
            if args.json:
                print(json.dumps({"line": number, "error": message}, separators=(",", ":")))
            else:
                print(f"line {number}: error: {message}", flush=True)
            continue
        _emit(out, args.json)
    return 2 if bad else 0
