"""Spreadsheet-safe CSV cells (OWASP "CSV Injection").

A text cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which
some spreadsheets skip before one of those) is taken as a formula when the file is opened: a bin
named ``=HYPERLINK("http://evil/", "click")`` would put a live link in the collection list.
Such cells get a leading ``'``, which spreadsheets show as text and do not display. Numbers stay
numbers (a longitude of ``-8.6`` is not text a person typed).
"""

from __future__ import annotations

from typing import Any

__all__ = ["safe_cell"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` for a CSV cell: ``None`` as empty, formula-like text prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
