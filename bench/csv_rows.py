"""Reading CSV rows from a run folder, where any row may be damaged."""
from __future__ import annotations

import csv
from typing import Iterable, Iterator


def csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, list[str] | None]]:
    """(line number, cells) of each CSV row; cells None for a row the csv module refuses (a field
    past its size limit, a stray quote running on): the caller drops and records it, the rows
    after it still read."""
    reader = csv.reader(lines)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield reader.line_num, None
            continue
        yield reader.line_num, cells
