"""An error report over (reference, hypothesis) lines, what ``ketos test`` users look for.

- confusions: substituted characters (reference -> hypothesis) with their counts, most frequent first;
- insertions (hypothesis characters with no reference character) and deletions (reference characters
  the hypothesis lost), by character;
- CER per group: per writer or document, from a file of ``<line id>\\t<group>`` rows (``read_groups``)
  or, for ids of the form ``<document>/<line>`` (the ALTO / PAGE reader's), per document;
- the worst lines by CER (ties: more errors first, then id).

Each line is aligned by a Levenshtein alignment (``align``: unit costs; on ties a substitution or match
is preferred, then a deletion, then an insertion), so the substitutions, insertions and deletions of a
line add up to its edit distance and the report's CER is the corpus CER of htr.text.metrics.

    from htr.evaluate import transcribe_split
    from htr.report import error_report, format_report
    t = transcribe_split(model, datamodule, "val")      # a Transcriber on a data module's split
    print(format_report(error_report(t.refs, t.hyps, t.ids)))
"""
from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from htr.errors import DatasetError
from htr.tables import format_table
from htr.textfile import read_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def align(ref: str, hyp: str) -> list[tuple[str, str]]:
    """The aligned character pairs of two strings: (r, h) matched or substituted, (r, "") deleted,
    ("", h) inserted, in reading order."""
    n, m = len(ref), len(hyp)
    d = [list(range(m + 1))] + [[i] + [0] * m for i in range(1, n + 1)]
    for i in range(1, n + 1):
        row, prev, r = d[i], d[i - 1], ref[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (r != hyp[j - 1]), prev[j] + 1, row[j - 1] + 1)
    pairs = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            pairs.append((ref[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", hyp[j - 1]))
            j -= 1
    return pairs[::-1]


def read_groups(path: str | Path) -> dict[str, str]:
    """A writers / documents file: ``<line id>\\t<group>`` per row (blank rows and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: groups file not found; expected '<line id>\\t<writer or document>' rows")
    groups = {}
    for n, row in enumerate(read_text(path, what="a UTF-8 TSV file").splitlines(), 1):
        if not row.strip() or row.startswith("#"):
            continue
        if "\t" not in row:
            raise DatasetError(f"{path}:{n}: {row[:60]!r} has no tab; expected '<line id>\\t<writer or document>'")
        key, group = row.split("\t", 1)
        key = key.strip()
        groups[key] = group.strip()
        if Path(key).suffix.lower() in IMAGE_SUFFIXES:  # line images named with their suffix: ids are stems
            groups.setdefault(key[: -len(Path(key).suffix)], group.strip())
    return groups


def document_groups(ids: Sequence[str]) -> dict[str, str] | None:
    """``<document>/<line>`` ids -> {id: document}; None when the ids carry no document."""
    if not ids or not all("/" in i for i in ids):
        return None
    return {i: i.rsplit("/", 1)[0] for i in ids}


def error_report(refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None = None,
                 groups: dict[str, str] | None = None, top: int = 20, worst: int = 10) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docstring); ``top`` rows per table, ``worst`` lines."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; expected one per line")
    ids = list(ids) if ids is not None else [str(k) for k in range(len(refs))]
    if groups is None:
        groups = document_groups(ids)
    subs: Counter = Counter()
    ins: Counter = Counter()
    dels: Counter = Counter()
    per_group: dict[str, list[int]] = {}
    lines = []
    for key, ref, hyp in zip(ids, refs, hyps):
        errors = 0
        for r, h in align(ref, hyp):
            if r and h and r != h:
                subs[(r, h)] += 1
            elif r and not h:
                dels[r] += 1
            elif h and not r:
                ins[h] += 1
            errors += r != h
        lines.append({"id": key, "ref": ref, "hyp": hyp, "errors": errors, "chars": len(ref),
                      "cer": errors / len(ref) if ref else float(errors)})
        if groups is not None:
            g = per_group.setdefault(groups.get(key, "(none)"), [0, 0, 0])
            g[0] += 1
            g[1] += errors
            g[2] += len(ref)
    total_errors = sum(x["errors"] for x in lines)
    total_chars = sum(x["chars"] for x in lines)

    def ranked(counter: Counter) -> list[tuple[Any, int]]:
        return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]

    return {
        "lines": len(lines), "chars": total_chars, "errors": total_errors,
        "cer": total_errors / total_chars if total_chars else float(total_errors),
        "substitutions": sum(subs.values()), "insertions": sum(ins.values()), "deletions": sum(dels.values()),
        "confusions": [{"ref": r, "hyp": h, "count": c} for (r, h), c in ranked(subs)],
        "inserted": [{"char": ch, "count": c} for ch, c in ranked(ins)],
        "deleted": [{"char": ch, "count": c} for ch, c in ranked(dels)],
        "groups": None if groups is None else [
            {"group": g, "lines": v[0], "errors": v[1], "chars": v[2], "cer": v[1] / v[2] if v[2] else float(v[1])}
            for g, v in sorted(per_group.items(), key=lambda kv: (-(kv[1][1] / max(kv[1][2], 1)), kv[0]))],
        "worst": sorted(lines, key=lambda x: (-x["cer"], -x["errors"], x["id"]))[:worst],
    }


def _show(ch: str) -> str:
    """A character as a table shows it: spaces and invisible characters by name."""
    return {" ": "<space>", "\t": "<tab>", "\u00a0": "<nbsp>"}.get(ch, ch if ch.isprintable() else f"U+{ord(ch):04X}")


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text tables (valid Markdown)."""
    out = [f"{report['lines']} lines, {report['chars']} reference characters, {report['errors']} errors "
           f"(CER {100 * report['cer']:.2f} %): {report['substitutions']} substitutions, "
           f"{report['insertions']} insertions, {report['deletions']} deletions"]
    if report["confusions"]:
        out += ["", "Most frequent confusions (reference -> hypothesis):",
                format_table(["reference", "hypothesis", "count"],
                             [[_show(c["ref"]), _show(c["hyp"]), c["count"]] for c in report["confusions"]])]
    for key, title in (("inserted", "Insertions"), ("deleted", "Deletions")):
        if report[key]:
            out += ["", f"{title} by character:",
                    format_table(["character", "count"], [[_show(c["char"]), c["count"]] for c in report[key]])]
    if report["groups"]:
        out += ["", "CER per writer / document:",
                format_table(["group", "lines", "errors", "chars", "CER %"],
                             [[g["group"], g["lines"], g["errors"], g["chars"], f"{100 * g['cer']:.2f}"]
                              for g in report["groups"]])]
    if report["worst"]:
        out += ["", "Worst lines:",
                format_table(["id", "CER %", "errors", "reference", "hypothesis"],
                             [[w["id"], f"{100 * w['cer']:.1f}", w["errors"], w["ref"], w["hyp"]]
                              for w in report["worst"]])]
    return "\n".join(out)


def to_html(report: dict[str, Any]) -> str:
    """A standalone HTML page of the report's tables."""
    def table(header: list[str], rows: list[list[Any]]) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = [f"<h1>Error report</h1><p>{html.escape(format_report(report).splitlines()[0])}</p>",
             "<h2>Confusions (reference &rarr; hypothesis)</h2>",
             table(["reference", "hypothesis", "count"], [[_show(c["ref"]), _show(c["hyp"]), c["count"]]
                                                          for c in report["confusions"]]),
             "<h2>Insertions</h2>",
             table(["character", "count"], [[_show(c["char"]), c["count"]] for c in report["inserted"]]),
             "<h2>Deletions</h2>",
             table(["character", "count"], [[_show(c["char"]), c["count"]] for c in report["deleted"]])]
    if report["groups"]:
        parts += ["<h2>CER per writer / document</h2>",
                  table(["group", "lines", "errors", "chars", "CER %"],
                        [[g["group"], g["lines"], g["errors"], g["chars"], f"{100 * g['cer']:.2f}"]
                         for g in report["groups"]])]
    parts += ["<h2>Worst lines</h2>", table(["id", "CER %", "errors", "reference", "hypothesis"],
                                            [[w["id"], f"{100 * w['cer']:.1f}", w["errors"], w["ref"], w["hyp"]]
                                             for w in report["worst"]])]
    style = "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>htr error report</title>'
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def save_report(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as JSON (``.json``) or HTML (``.html`` / ``.htm``)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    elif path.suffix.lower() in (".html", ".htm"):
        path.write_text(to_html(report), encoding="utf-8")
    else:
        raise ValueError(f"{path}: report file suffix {path.suffix!r}; expected .json or .html")
