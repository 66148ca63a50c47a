#!/usr/bin/env python3
"""Refills the 2-D learned-covariance tables of docs/learned.md from the committed results.

Every table whose first header cell names a 2-D data set and a score (``mog40, exact score``,
``grid9, learned, DDIM path KL``, ...) keeps its rows and columns; its cells are recomputed from
``studies/results/learned_<data>_<score>[_es1e-3].json``:

- ``<data>, <score> score[, early stop 1e-3]`` with ``T = `` columns: the DDPM path KL
  (exact score) or ``path KL (mean part / cov part)`` (learned score), ``S_full`` its own row;
- the same with ``t = `` columns: the relative diagonal error at the nearest curve time;
- ``<data>, <score>, DDPM|DDIM``: MMD^2 x 1e3 +- s.e. of the sampled chains;
- ``<data>, <score>, DDIM path KL``: the OCM-DDIM path KL (mean part / cov part).

Usage: ``python3 scripts/learned_tables.py [--check]`` (``--check``: exit 1 if a table would
change, print nothing else). Standard library only.
"""

import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "learned.md"
HEAD = re.compile(
    r"^\| (mog40|grid9), (exact|learned)( score)?(, early stop 1e-3)?(, DDPM|, DDIM path KL|, DDIM)? \|"
)


def g3(x):
    """Three significant digits, as the tables print them (`inf` for an infinite value)."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if math.isinf(x):
        return "inf"
    return format(x, ".3g")


def results(data, score, early):
    name = f"learned_{data}_{score}{'_es1e-3' if early else ''}.json"
    return json.loads((ROOT / "studies" / "results" / name).read_text())


def num(v):
    return math.inf if v == "inf" else v


HEADS = ("ocm", "sn", "npr", "iddpm")


def rel_mse_at(doc, method, t):
    """The relative diagonal error of `method` at the curve time nearest `t` (None if none)."""
    pts = [c for c in doc["cov_error"] if c["method"] == method]
    if not pts:
        return None
    return min(pts, key=lambda c: abs(math.log(c["t"]) - math.log(t)))["rel_mse"]


def lowest(doc, t, methods):
    """`best / best head` among the table's methods at time `t`."""
    vals = [(rel_mse_at(doc, m, t), m) for m in methods]
    vals = [(v, m) for v, m in vals if v is not None]
    best = min(vals)[1]
    heads = [(v, m) for v, m in vals if m in HEADS]
    return f"{best} / {min(heads)[1]}" if heads else best


def cell(doc, label, col, kind, score, labels):
    """The new text of one cell: row `label` (of the table's rows `labels`), column `col`."""
    m = re.match(r"([Tt]) = ([0-9.]+)", col)
    if not m:
        raise ValueError(f"column `{col}`")
    if m.group(1) == "t":
        t = float(m.group(2))
        if label == "lowest (all / heads)":
            return lowest(doc, t, labels)
        return g3(rel_mse_at(doc, label, t))
    t = int(m.group(2))
    kernel = "ddim" if kind in (", DDIM", ", DDIM path KL") else "ddpm"
    rows = [r for r in doc["rows"] if r["T"] == t and r.get("kernel", "ddpm") == kernel]
    if label == "S_full":
        return g3(next(num(r["s_full"]) for r in rows if "s_full" in r))
    row = next((r for r in rows if r["method"] == label), None)
    if row is None:
        return "-"
    if kind in (", DDPM", ", DDIM"):
        if row.get("mmd") is None:
            return "-"
        return f"{1e3 * row['mmd']:.2f} ± {1e3 * row['mmd_se']:.2f}"
    pk = num(row["path_kl"])
    if score == "exact" and kind != ", DDIM path KL":
        return g3(pk)
    if row.get("mean_part") is None:
        return g3(pk)
    return f"{g3(pk)} ({g3(num(row['mean_part']))} / {g3(num(row['cov_part']))})"


def refill(lines):
    out = []
    i = 0
    while i < len(lines):
        m = HEAD.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        data, score, _, early, kind = m.groups()
        doc = results(data, score, early is not None)
        cols = [c.strip() for c in lines[i].strip().strip("|").split("|")][1:]
        out.append(lines[i])
        out.append(lines[i + 1])
        i += 2
        labels = []
        while i + len(labels) < len(lines) and lines[i + len(labels)].startswith("| "):
            labels.append(lines[i + len(labels)].strip().strip("|").split("|")[0].strip())
        for label in labels:
            cells = [cell(doc, label, c, kind or "", score, labels) for c in cols]
            out.append("| " + " | ".join([label] + cells) + " |\n")
            i += 1
    return out


def main():
    lines = DOC.read_text().splitlines(keepends=True)
    new = refill(lines)
    if "--check" in sys.argv:
        sys.exit(0 if new == lines else 1)
    DOC.write_text("".join(new))
    changed = sum(a != b for a, b in zip(lines, new))
    print(f"{DOC.relative_to(ROOT)}: {changed} table lines changed")


if __name__ == "__main__":
    main()
