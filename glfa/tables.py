"""Result tables: the one Markdown-table writer and the one CSV writer of every command."""
import csv
import os
from typing import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: one header row, then one line per row (cells as ``str`` gives them)."""
    def line(cells: Iterable[object]) -> str:
        return "| " + " | ".join(map(str, cells)) + " |"
    return "\n".join([line(header), line("---" for _ in header), *map(line, rows)])


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A CSV file with a header line; numbers are written in full precision."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
