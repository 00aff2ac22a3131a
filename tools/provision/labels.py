"""Node labels: LoRa Alliance TR005 QR codes with the name and DevEUI as text.

TR005 "LoRaWAN Device Identification QR Codes" (LoRa Alliance, 2020), as read by The Things Stack
(``lorawan-stack pkg/qrcodegenerator/qrcode/enddevices/lora_alliance_tr005.go``) and summarised in
TTS docs, "CSV File Reference"::

    LW:D0:<JoinEUI 16 hex>:<DevEUI 16 hex>:<ProfileID 8 hex = VendorID 4 + VendorProfileID 4>
      [:O<owner token>][:S<serial number>][:P<proprietary>][:C<checksum 4 hex>]

``LW`` is the schema id, ``D0`` the version. Optional elements are tagged by their first letter and
may come in any order; a value may not contain ``:``. We write them in the order O, S, P, C of the
TR005 example. The checksum element is parsed and kept but not generated nor verified: its algorithm
is not in our references, and a wrong checksum would make scanners refuse the label.

The AppKey is never in a QR code (ARCHITECTURE.md invariant 8, TR005 §"security"): a label only
identifies a node; its key goes to the network server through registration.

citypack has no LoRa Alliance vendor id, so the ProfileID defaults to vendor ``FFFF`` (unassigned)
with profile ``0001`` for bins and ``0002`` for lamps; ``--vendor-id`` sets a real one.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import segno

from tools.provision.errors import TR005Error
from tools.provision.inventory import Node

DEFAULT_VENDOR_ID = "FFFF"
PROFILE_IDS = {"bin": "0001", "lamp": "0002"}
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_ELEMENT_VALUE = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")  # printable ASCII, no space, no ':'
_ELEMENTS = {"O": "owner_token", "S": "serial", "P": "proprietary", "C": "checksum"}
MAX_LENGTH = 400  # far below a QR code's capacity; a label must stay scannable when small


@dataclass(frozen=True)
class TR005:
    """One TR005 device identification; EUIs lower-case hex, ids upper-case hex."""

    join_eui: str
    dev_eui: str
    vendor_id: str
    profile_id: str
    owner_token: str = ""
    serial: str = ""
    proprietary: str = ""
    checksum: str = ""

    def __post_init__(self) -> None:
        _hex_field(self.join_eui, 16, "JoinEUI")
        _hex_field(self.dev_eui, 16, "DevEUI")
        _hex_field(self.vendor_id, 4, "ProfileID (vendor id)")
        _hex_field(self.profile_id, 4, "ProfileID (profile id)")
        for tag, name in _ELEMENTS.items():
            value = getattr(self, name)
            if value:
                _element_value(tag, value)
        if self.checksum:
            _hex_field(self.checksum, 4, "CheckSum")

    def to_string(self) -> str:
        parts = [
            "LW",
            "D0",
            self.join_eui.upper(),
            self.dev_eui.upper(),
            (self.vendor_id + self.profile_id).upper(),
        ]
        for tag, name in _ELEMENTS.items():
            value = getattr(self, name)
            if value:
                parts.append(tag + (value.upper() if tag == "C" else value))
        return ":".join(parts)

    @classmethod
    def parse(cls, text: str) -> TR005:
        """Parse a scanned TR005 string; a bad one raises :class:`TR005Error` naming the element."""
        if not isinstance(text, str):
            raise TR005Error("expected text", field="string")
        text = text.strip()
        if len(text) > MAX_LENGTH:
            raise TR005Error(f"longer than {MAX_LENGTH} characters", field="string")
        parts = text.split(":")
        # check the fixed elements in order, so the first wrong one is the one reported
        if parts[0] != "LW":
            raise TR005Error(f"expected 'LW', got {parts[0][:8]!r}", field="schema id")
        if len(parts) < 2 or parts[1] != "D0":
            got = repr(parts[1][:8]) if len(parts) > 1 else "nothing"
            raise TR005Error(f"expected 'D0', got {got}", field="version")
        fixed = (("JoinEUI", 16), ("DevEUI", 16), ("ProfileID", 8))
        for index, (name, digits) in enumerate(fixed, start=2):
            if len(parts) <= index:
                raise TR005Error("missing", field=name)
            _hex_field(parts[index], digits, name)
        join_eui, dev_eui, profile = parts[2], parts[3], parts[4]
        found: dict[str, str] = {}
        for element in parts[5:]:
            if not element:
                raise TR005Error(
                    "empty element (two ':' in a row or a trailing ':')", field="element"
                )
            tag, value = element[0], element[1:]
            if tag not in _ELEMENTS:
                raise TR005Error(
                    f"unknown element tag {tag!r} (known: O, S, P, C)", field="element"
                )
            name = _ELEMENTS[tag]
            if name in found:
                raise TR005Error("appears twice", field=_label(tag))
            found[name] = _element_value(tag, value)
        return cls(
            join_eui=join_eui.lower(),
            dev_eui=dev_eui.lower(),
            vendor_id=profile[:4].upper(),
            profile_id=profile[4:].upper(),
            **found,
        )


def _label(tag: str) -> str:
    return {"O": "OwnerToken", "S": "SerNum", "P": "Proprietary", "C": "CheckSum"}[tag]


def _hex_field(value: str, digits: int, name: str) -> str:
    if len(value) != digits or not _HEX.match(value):
        raise TR005Error(f"expected {digits} hex digits, got {value[:24]!r}", field=name)
    return value


def _element_value(tag: str, value: str) -> str:
    if not value:
        raise TR005Error("empty value", field=_label(tag))
    if not _ELEMENT_VALUE.match(value):
        raise TR005Error("expected printable ASCII without spaces or ':'", field=_label(tag))
    if tag == "C":
        _hex_field(value, 4, "CheckSum")
    return value


def tr005_for(node: Node, *, vendor_id: str = DEFAULT_VENDOR_ID, owner_token: str = "") -> TR005:
    """The TR005 identification of a node: identity, profile and serial, never its key."""
    return TR005(
        join_eui=node.join_eui,
        dev_eui=node.dev_eui,
        vendor_id=vendor_id.upper(),
        profile_id=PROFILE_IDS[node.kind],
        owner_token=owner_token,
        serial=node.serial,
    )


# --- rendering ---------------------------------------------------------------------------------

_LABEL_W_MM = 74.0  # 29 mm continuous tape of common label printers, cut at 74 mm
_LABEL_H_MM = 29.0


def _grouped(eui: str) -> str:
    return " ".join(eui.upper()[i : i + 4] for i in range(0, 16, 4))


def _qr(payload: str) -> segno.QRCode:
    return segno.make(payload, error="m", micro=False)


def _qr_svg_element(payload: str, *, x: float, y: float, size: float) -> str:
    """The QR code as a nested ``<svg>`` placed at (x, y) with the given size (mm)."""
    qr = _qr(payload)
    buffer = io.BytesIO()
    qr.save(buffer, kind="svg", xmldecl=False, svgns=False, nl=False, omitsize=True, border=2)
    inner = buffer.getvalue().decode()
    width, height = qr.symbol_size(scale=1, border=2)
    return inner.replace(
        "<svg ",
        f'<svg x="{x:.2f}" y="{y:.2f}" width="{size:.2f}" height="{size:.2f}" '
        f'preserveAspectRatio="xMidYMid meet" ',
        1,
    ).replace('viewBox="0 0', f'data-modules="{width}x{height}" viewBox="0 0', 1)


def _label_body(node: Node, payload: str, *, x: float, y: float) -> str:
    qr = _qr_svg_element(payload, x=x + 1.0, y=y + 1.0, size=_LABEL_H_MM - 2.0)
    tx = x + _LABEL_H_MM + 1.0
    lines = [
        (f"{node.name}", 5.0, "bold"),
        (f"DevEUI {_grouped(node.dev_eui)}", 2.8, "normal"),
        (f"{node.kind} · {node.serial}", 3.0, "normal"),
        (f"{node.street}", 3.0, "normal"),
    ]
    texts = []
    line_y = y + 7.0
    for text, size, weight in lines:
        if text:
            texts.append(
                f'<text x="{tx:.2f}" y="{line_y:.2f}" font-family="DejaVu Sans, Arial, sans-serif" '
                f'font-size="{size}" font-weight="{weight}">{html.escape(text)}</text>'
            )
        line_y += size + 2.5
    outline = (
        f'<rect x="{x:.2f}" y="{y:.2f}" width="{_LABEL_W_MM}" height="{_LABEL_H_MM}" '
        'fill="#fff" stroke="#999" stroke-width="0.2"/>'
    )
    return outline + qr + "".join(texts)


def label_svg(node: Node, payload: str) -> str:
    """One label: the QR code, the node's name and its DevEUI as text (SVG, sizes in mm)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_LABEL_W_MM}mm" height="{_LABEL_H_MM}mm" '
        f'viewBox="0 0 {_LABEL_W_MM} {_LABEL_H_MM}">'
        f"<title>{html.escape(node.name)} {node.dev_eui.upper()}</title>"
        f'<desc data-tr005="{html.escape(payload)}">TR005 QR code</desc>'
        f"{_label_body(node, payload, x=0.0, y=0.0)}</svg>\n"
    )


def sheet_svg(items: Sequence[tuple[Node, str]], *, columns: int = 3) -> str:
    """A printable A4 sheet of labels (several pages tall when the batch needs it)."""
    gap = 4.0
    rows = max(1, -(-len(items) // columns))
    width = columns * _LABEL_W_MM + (columns + 1) * gap
    height = rows * _LABEL_H_MM + (rows + 1) * gap
    bodies = []
    for index, (node, payload) in enumerate(items):
        row, col = divmod(index, columns)
        x = gap + col * (_LABEL_W_MM + gap)
        y = gap + row * (_LABEL_H_MM + gap)
        bodies.append(
            f'<g data-dev-eui="{node.dev_eui}">{_label_body(node, payload, x=x, y=y)}</g>'
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.1f}mm" height="{height:.1f}mm" '
        f'viewBox="0 0 {width:.1f} {height:.1f}">{"".join(bodies)}</svg>\n'
    )


def sheet_html(items: Sequence[tuple[Node, str]], *, title: str) -> str:
    """The same sheet as HTML: one inline SVG label per node, laid out for A4 printing."""
    labels = "\n".join(
        f'<div class="label">{label_svg(node, payload).split("?>", 1)[1]}</div>'
        for node, payload in items
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "@page{size:A4;margin:10mm}body{margin:0;font-family:sans-serif}"
        ".sheet{display:flex;flex-wrap:wrap;gap:4mm}.label{width:74mm;height:29mm;"
        "break-inside:avoid}</style></head>\n"
        f'<body><div class="sheet">\n{labels}\n</div></body></html>\n'
    )


def label_png(node: Node, payload: str, *, dpi: int = 300) -> bytes:
    """One label as PNG: segno draws the QR code, Pillow adds the text beside it."""
    from PIL import Image, ImageDraw, ImageFont

    px_per_mm = dpi / 25.4
    width, height = round(_LABEL_W_MM * px_per_mm), round(_LABEL_H_MM * px_per_mm)
    qr = _qr(payload)
    modules = qr.symbol_size(scale=1, border=2)[0]
    scale = max(1, int((height - 2 * px_per_mm) // modules))
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=scale, border=2)
    buffer.seek(0)
    label = Image.new("L", (width, height), 255)
    with Image.open(buffer) as qr_image:
        label.paste(qr_image.convert("L"), (round(px_per_mm), (height - qr_image.height) // 2))
    draw = ImageDraw.Draw(label)
    x = round((_LABEL_H_MM + 1.0) * px_per_mm)
    y = round(3.0 * px_per_mm)
    for text, size_mm in (
        (node.name, 5.0),
        (f"DevEUI {_grouped(node.dev_eui)}", 2.8),
        (f"{node.kind} {node.serial}", 3.0),
        (node.street, 3.0),
    ):
        if text:
            font = _font(ImageFont, size_mm * px_per_mm)
            draw.text((x, y), text, fill=0, font=font)
        y += round((size_mm + 2.5) * px_per_mm)
    out = io.BytesIO()
    label.save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


_TTF = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(image_font: Any, size_px: float) -> Any:
    """DejaVu Sans where installed (all of Latin-1 and more), else Pillow's built-in font."""
    for name in _TTF:
        try:
            return image_font.truetype(name, round(size_px))
        except OSError:
            continue
    return image_font.load_default(size=size_px)


def write_labels(
    nodes: Sequence[Node],
    out_dir: Path,
    *,
    formats: Sequence[str] = ("svg", "png"),
    sheet: bool = False,
    vendor_id: str = DEFAULT_VENDOR_ID,
    title: str = "citypack labels",
) -> list[Path]:
    """Write one label per node (``<name>.svg``/``.png``) and optionally a batch sheet."""
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [(node, tr005_for(node, vendor_id=vendor_id).to_string()) for node in nodes]
    written: list[Path] = []
    for node, payload in items:
        if "svg" in formats:
            path = out_dir / f"{node.name}.svg"
            path.write_text(label_svg(node, payload), encoding="utf-8")
            written.append(path)
        if "png" in formats:
            path = out_dir / f"{node.name}.png"
            path.write_bytes(label_png(node, payload))
            written.append(path)
    if sheet:
        path = out_dir / "sheet.svg"
        path.write_text(sheet_svg(items), encoding="utf-8")
        written.append(path)
        path = out_dir / "sheet.html"
        path.write_text(sheet_html(items, title=title), encoding="utf-8")
        written.append(path)
    return written
