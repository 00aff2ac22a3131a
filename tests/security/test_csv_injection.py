"""The collection CSV (issue 14): text that a spreadsheet would run as a formula is escaped.

Through the API: a bin registered with a formula for a name, street and group, full, appears in
``GET /api/v1/collection?format=csv`` with every such cell prefixed by ``'`` (gateway/csvsafe.py);
numbers, negative ones included, stay numbers.
"""

from __future__ import annotations

import csv
import io

import httpx
from fastapi import FastAPI

from gateway.csvsafe import safe_cell
from gateway.service import Gateway
from tests.security.conftest import TOKEN

EVIL = {
    "name": '=HYPERLINK("http://evil.example/","click")',
    "street": "+1+1",
    "group": "@SUM(A1:A9)",
}


async def test_collection_csv_escapes_formulas(gateway_app: tuple[Gateway, FastAPI]) -> None:
    gateway, app = gateway_app
    dev = "a840410001810099"
    device = gateway.upsert_device(
        dev, {"kind": "bin", **EVIL, "latitude": -33.9, "longitude": -18.4}
    )
    device.derived["fill_percent"] = 95.0  # full: on the list
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://gw",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        response = await client.get("/api/v1/collection", params={"format": "csv"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    row = next(r for r in rows if r["dev_eui"] == dev)
    for key, value in EVIL.items():
        assert row[key] == "'" + value
    assert (row["latitude"], row["longitude"]) == ("-33.9", "-18.4")
    for line in response.text.splitlines():
        assert not any(cell.startswith(("=", "+", "@")) for cell in line.split(","))


def test_safe_cell() -> None:
    assert safe_cell(None) == ""
    assert safe_cell("-5") == "'-5"  # text: escaped
    assert safe_cell(-5) == -5  # a number: kept
    assert safe_cell("\t=1") == "'\t=1"
    assert safe_cell("Main St") == "Main St"
