"""Plain fixed-width tables for reports and logs (valid Markdown)."""
from __future__ import annotations


def format_table(header: list[str], rows: list[list[object]]) -> str:
    """A plain fixed-width table (also valid Markdown)."""
    def text(c: object) -> str:
        if isinstance(c, float):
            return f"{c:.0f}" if abs(c) >= 1000 else f"{c:.3g}"  # 1102, not 1.1e+03
        return str(c)

    cells = [[str(c) for c in header]] + [[text(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])
