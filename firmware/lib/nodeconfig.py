"""The node's configuration: /config.json and its keys, as `citypack provision deploy` writes them.

Layout (docs/interfaces.md, "Node configuration on the board's filesystem"):

- ``/config.json``: ``{"dev_eui", "join_eui", "kind", "name", "region": "EU868"|"US915", "board",
  "latitude", "longitude", "activation": "otaa"|"abp", "app": {...}}``; never a key.
- keys: ESP32 NVS namespace ``citypack``, blob ``app_key`` (16 bytes) when ``esp32`` is importable
  (on the board); otherwise, and on a board whose NVS has no key yet, ``secrets.json`` next to
  ``config.json``: ``{"app_key": "<32 hex>"}``.
- ABP (for tests and labs): ``config.json`` adds ``"dev_addr"`` (8 hex), the secrets hold
  ``nwk_s_key`` and ``app_s_key`` (NVS blobs of the same names). LoRaWAN L2 1.0.4 §6.1-6.3.
- FUOTA (optional): ``config.json`` ``"fuota_public_key"``: the Ed25519 public key (64 hex) that
  update bundles must be signed with (firmware/lib/fuota/bundle.py). Public, so it may sit in
  config.json; without it the node takes no update.

Runs unchanged under MicroPython and CPython (ARCHITECTURE.md invariant 6). Every problem raises
:class:`ConfigError` (a ``ValueError``) whose ``field`` names the offending field; a key never
appears in a message or a ``repr`` (invariant 8).

EUIs are kept as lower-case hex strings, MSB first as consoles print them; :func:`eui_bytes`
gives the 8 bytes. Keys are ``bytes`` of 16. ``board`` is the module name under
``firmware/boards`` (``heltec-v3`` as provisioning writes it becomes ``heltec_v3``).
"""

import binascii
import json

try:
    import esp32  # only on the board
except ImportError:
    esp32 = None

NVS_NAMESPACE = "citypack"
CONFIG_NAME = "config.json"
SECRETS_NAME = "secrets.json"
KINDS = ("bin", "lamp")
REGIONS = ("EU868", "US915")
ACTIVATIONS = ("otaa", "abp")
_HEX = "0123456789abcdef"


class ConfigError(ValueError):
    """The node's configuration or keys are missing or invalid; ``field`` names what is wrong."""

    def __init__(self, field, message):
        super().__init__("node config " + field + ": " + message)
        self.field = field


class NodeConfig:
    """A validated node configuration. ``repr`` never shows keys."""

    def __init__(self, fields, keys):
        self.dev_eui = fields["dev_eui"]
        self.join_eui = fields["join_eui"]
        self.kind = fields["kind"]
        self.name = fields["name"]
        self.region = fields["region"]
        self.board = fields["board"]
        self.latitude = fields["latitude"]
        self.longitude = fields["longitude"]
        self.activation = fields["activation"]
        self.dev_addr = fields.get("dev_addr")
        self.fuota_public_key = fields.get("fuota_public_key")  # 32 bytes or None
        self.app = fields["app"]
        self.app_key = keys.get("app_key")
        self.nwk_s_key = keys.get("nwk_s_key")
        self.app_s_key = keys.get("app_s_key")

    def __repr__(self):
        return "NodeConfig(%s %s %s, %s, %s)" % (
            self.kind,
            self.name,
            self.dev_eui,
            self.region,
            self.activation,
        )


def eui_bytes(hex_text):
    """8 bytes of an EUI (MSB first) from its hex form."""
    return binascii.unhexlify(hex_text)


def _join(root, name):
    if not root or root == "/":
        return "/" + name
    return root.rstrip("/") + "/" + name


def _hex(value, digits, field):
    if not isinstance(value, str) or len(value) != digits:
        raise ConfigError(field, "expected %d hex digits" % digits)
    text = value.lower()
    for char in text:
        if char not in _HEX:
            raise ConfigError(field, "expected %d hex digits" % digits)
    return text


def _key(value, field):
    # the message never repeats the value: it may be a key
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 16:
            raise ConfigError(field, "expected 16 bytes, got %d" % len(value))
        return bytes(value)
    return binascii.unhexlify(_hex(value, 32, field))


def _text(config, field, required=True):
    value = config.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise ConfigError(field, "expected a non-empty string")
    return value


def _board(config):
    # provisioning names boards "heltec-v3"; main.py imports boards.<name>: "heltec_v3"
    value = _text(config, "board").replace("-", "_")
    for char in value:
        if not (char == "_" or "a" <= char <= "z" or "0" <= char <= "9"):
            raise ConfigError("board", "expected a board name like heltec-v3 or ttgo-lora32")
    return value


def _coordinate(config, field, limit):
    value = config.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, "expected a number or null")
    if not -limit <= value <= limit:
        raise ConfigError(field, "expected a value from %d to %d" % (-limit, limit))
    return float(value)


def _choice(config, field, choices):
    value = config.get(field)
    if value not in choices:
        raise ConfigError(field, "expected one of " + ", ".join(choices))
    return value


def validate(config, keys):
    """Check a decoded config.json (dict) and its keys (dict of hex or bytes) → NodeConfig."""
    if not isinstance(config, dict):
        raise ConfigError(CONFIG_NAME, "expected a JSON object")
    if not isinstance(keys, dict):
        raise ConfigError(SECRETS_NAME, "expected a JSON object")
    for forbidden in ("app_key", "nwk_key", "nwk_s_key", "app_s_key"):
        if forbidden in config:
            raise ConfigError(forbidden, "keys belong in NVS or secrets.json, never in config.json")
    fields = {
        "dev_eui": _hex(config.get("dev_eui"), 16, "dev_eui"),
        "join_eui": _hex(config.get("join_eui"), 16, "join_eui"),
        "kind": _choice(config, "kind", KINDS),
        "name": _text(config, "name"),
        "region": _choice(config, "region", REGIONS),
        "board": _board(config),
        "latitude": _coordinate(config, "latitude", 90),
        "longitude": _coordinate(config, "longitude", 180),
        "activation": config.get("activation", "otaa"),
        "app": config.get("app", {}),
    }
    if fields["activation"] not in ACTIVATIONS:
        raise ConfigError("activation", "expected one of " + ", ".join(ACTIVATIONS))
    if not isinstance(fields["app"], dict):
        raise ConfigError("app", "expected a JSON object")
    if (fields["latitude"] is None) != (fields["longitude"] is None):
        raise ConfigError(
            "latitude" if fields["latitude"] is None else "longitude",
            "latitude and longitude go together",
        )
    if config.get("fuota_public_key") is not None:
        fields["fuota_public_key"] = binascii.unhexlify(
            _hex(config.get("fuota_public_key"), 64, "fuota_public_key")
        )
    checked = {}
    if fields["activation"] == "otaa":
        if keys.get("app_key") is None:
            raise ConfigError("app_key", "missing (NVS namespace citypack or secrets.json)")
        checked["app_key"] = _key(keys["app_key"], "app_key")
    else:
        fields["dev_addr"] = _hex(config.get("dev_addr"), 8, "dev_addr")
        for name in ("nwk_s_key", "app_s_key"):
            if keys.get(name) is None:
                raise ConfigError(name, "missing for ABP (NVS namespace citypack or secrets.json)")
            checked[name] = _key(keys[name], name)
    return NodeConfig(fields, checked)


def _read_json(path, field):
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        raise ConfigError(field, "cannot read " + path)
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(field, path + " is not valid JSON")


def _nvs_keys(names):
    """Keys from NVS; absent blobs are left out. Only on the board."""
    found = {}
    if esp32 is None:
        return found
    try:
        nvs = esp32.NVS(NVS_NAMESPACE)
    except OSError:
        return found
    for name in names:
        buf = bytearray(16)
        try:
            length = nvs.get_blob(name, buf)
        except OSError:
            continue
        found[name] = bytes(buf[:length])
    return found


def load(root="/"):
    """Read and validate ``config.json`` under ``root`` and the node's keys."""
    config = _read_json(_join(root, CONFIG_NAME), CONFIG_NAME)
    names = (
        ("nwk_s_key", "app_s_key")
        if isinstance(config, dict) and config.get("activation") == "abp"
        else ("app_key",)
    )
    keys = _nvs_keys(names)
    if len(keys) < len(names):
        path = _join(root, SECRETS_NAME)
        try:
            with open(path):
                pass
            present = True
        except OSError:
            present = False
        if present:
            stored = _read_json(path, SECRETS_NAME)
            if not isinstance(stored, dict):
                raise ConfigError(SECRETS_NAME, "expected a JSON object")
            for name in names:
                if name not in keys and name in stored:
                    keys[name] = stored[name]
    return validate(config, keys)
