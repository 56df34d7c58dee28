"""The cell zoo: does every recurrent cell grow Karpathy's cells? Eight cells at one parameter count, each
trained on War and Peace and on the Linux kernel for the same time, then probed and explained.

    neuroscope sweep analyses/cell_zoo.toml --workers 2      # the 16 runs (about 45 minutes on 2 cores)
    python analyses/cell_zoo.py                              # reports/cell_zoo.html and .json from its table

A cell grows a finding when its best unit reaches |r| >= --min-r with the feature and the best formula
for that unit (neuroscope.explain, chosen on the first 2/3 of the text) keeps a held-out IoU >= --min-iou:
in_quote and line_position on War and Peace, in_comment and brace_depth on the Linux kernel.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Report, save  # noqa: E402

HERE = Path(__file__).resolve().parent
FINDINGS = {"warpeace": ("in_quote", "line_position"), "linux": ("in_comment", "brace_depth")}
CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN (tanh)", "mingru": "minGRU", "minlstm": "minLSTM",
              "slstm": "sLSTM", "mlstm": "mLSTM", "ssm": "SSM (selective)"}


def verdicts(rows: list[dict], min_r: float, min_iou: float) -> dict:
    """{cell: {finding: grown?}} for the findings each corpus tests."""
    out: dict = {}
    for r in rows:
        for feature in FINDINGS[Path(r["corpus"]).stem]:
            rv, iou = r.get(f"{feature}_r"), r.get(f"{feature}_iou")
            grown = rv is not None and abs(rv) >= min_r and iou is not None and iou >= min_iou
            out.setdefault(r["cell"], {})[feature] = grown
    return out


def _table(rows: list[dict], corpus: str) -> str:
    head = ["cell", "hidden", "steps", "test loss (nats)"] + [f"{f}: unit, r, IoU" for f in FINDINGS[corpus]] + \
        ["explained units"]
    body = []
    for r in rows:
        if Path(r["corpus"]).stem != corpus:
            continue
        cells = [CELL_NAMES[r["cell"]], r["hidden"], f"{r['steps']:,}", f"{r['test_loss']:.3f}"]
        for f in FINDINGS[corpus]:
            cells.append("-" if r[f"{f}_unit"] is None else
                         f"{r[f'{f}_unit']}, {r[f'{f}_r']:+.2f}, {r[f'{f}_iou']:.2f}")
        cells.append(f"{r['explained_units']} of {r['explained_of']} ({r['explained_share']:.0%})")
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(body)
            + "</table>")


def _samples(rows: list[dict]) -> str:
    parts = []
    for r in rows:
        parts.append(f"<h4>{html.escape(CELL_NAMES[r['cell']])}, {html.escape(Path(r['corpus']).stem)}</h4>"
                     f"<pre>{html.escape(r.get('sample') or '')}</pre>")
    return "".join(parts)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--spec", default=str(HERE / "cell_zoo.toml"), help="the sweep's spec")
    p.add_argument("--min-r", type=float, default=0.5, help="|r| the best unit needs")
    p.add_argument("--min-iou", type=float, default=0.5, help="held-out IoU its best formula needs")
    p.add_argument("--out", default=None, help="report path (default reports/cell_zoo.html)")
    args = p.parse_args(argv)
    spec = tomllib.loads(Path(args.spec).read_text(encoding="utf-8"))
    results = Path(args.spec).resolve().parent / spec["out"] / "results.json"
    if not results.is_file():
        sys.exit(f"{results} does not exist: run `neuroscope sweep {args.spec}` first")
    rows = json.loads(results.read_text(encoding="utf-8"))
    grown = verdicts(rows, args.min_r, args.min_iou)
    for cell, found in grown.items():
        print(f"{CELL_NAMES[cell]:<16} grows: {', '.join(f for f, g in found.items() if g) or 'none of the four'}")
    verdict_html = "<ul>" + "".join(
        f"<li><b>{html.escape(CELL_NAMES[c])}</b>: {html.escape(', '.join(f for f, g in v.items() if g) or 'none')}"
        f" of {', '.join(v)}</li>" for c, v in grown.items()) + "</ul>"
    train = spec["train"]
    doc = Report("The cell zoo: which recurrent cells grow Karpathy's cells", [
        f"Eight cells with about {spec['parameters']:,} weights each ({train['layers']} layers; hidden sizes chosen "
        f"to match), each trained for {train['minutes']} minutes of wall-clock time on one CPU thread, two runs at "
        f"a time (batch {train['batch']}, windows of {train['seq']}), on War and Peace and on the Linux kernel.",
        f"Findings: the best unit's |r| on the first {spec['measure']['chars']:,} test characters, and the held-out "
        f"IoU of its best formula. A cell grows a finding at |r| >= {args.min_r} and IoU >= {args.min_iou}. "
        "Explained units: h and c units whose best formula passes neuroscope.explain's bar (character-class "
        "formulas count too)."],
        [{"id": "verdicts", "title": "Verdicts", "kind": "html", "html": verdict_html},
         {"id": "warpeace", "title": "War and Peace", "kind": "html", "html": _table(rows, "warpeace")},
         {"id": "linux", "title": "Linux kernel", "kind": "html", "html": _table(rows, "linux")},
         {"id": "samples", "title": "Samples (temperature 0.5)", "kind": "html", "html": _samples(rows)}], {})
    summary = {"script": "cell_zoo", "spec": spec, "min_r": args.min_r, "min_iou": args.min_iou,
               "verdicts": grown, "rows": rows}
    save("cell_zoo", doc, summary, args.out)
    return summary


if __name__ == "__main__":
    main()
