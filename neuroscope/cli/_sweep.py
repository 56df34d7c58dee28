"""`neuroscope sweep SPEC`: a grid of train-then-probe tasks on dask.distributed (neuroscope.train.run_sweep),
and the measure each task ends with: the probe's best unit per feature on the test split."""
from __future__ import annotations

import click

from ._options import echo_json

MEASURE_KEYS = {"features", "chars", "explain", "explain_units", "sample_chars"}
from ._threads import threads_option


def probe_measure(ckpt, corpus: str, features=(), chars: int = 20_000, explain: bool = False,
                  explain_units: int = 0, sample_chars: int = 0) -> dict:
    """After training: per feature, the best unit on the first `chars` test characters (probe, Pearson r
    only) and its r; a feature constant there gets None. With explain: also the held-out IoU of the best
    formula for each of those units, and the share of the model's h and c units (the `explain_units` most
    variable; 0: all) that a formula explains (neuroscope.explain's verdict). sample_chars: that many
    characters of the checkpoint's final sample at temperature 0.5."""
    import pandas as pd

    from ..checkpoint import choose_text
    from ..explain import explain as explain_units_of
    from ..features import label
    from ..names import state_names
    from ..probe import probe
    text = choose_text(ckpt, corpus, split="test", chars=chars).text
    labels = {f: label(text, f) for f in features}
    varying = {f: y for f, y in labels.items() if y.min() != y.max()}
    out = {f"{f}_{k}": None for f in features for k in ("unit", "r") + (("iou",) if explain else ())}
    if varying:
        ranking = probe(ckpt, text, varying, null=False, sparse=False, control=False, baselines=False, ablate=0,
                        progress=False).ranking
        for f in varying:
            best = ranking[ranking["feature"] == f].iloc[0]
            out[f"{f}_unit"], out[f"{f}_r"] = str(best["unit_id"]), float(best["r"])
    if explain:
        total = len(state_names(ckpt.config, ("h", "c"))) * ckpt.config.hidden_size
        n = min(explain_units or total, total)
        best = explain_units_of(ckpt, text, top_units=n, contexts=False).table
        best = best[best["rank"] == 1].set_index("unit")
        out |= {"explained_units": int(best["explained"].sum()), "explained_of": int(n),
                "explained_share": float(best["explained"].sum()) / n}
        missing = [u for u in dict.fromkeys(out[f"{f}_unit"] for f in varying) if u not in best.index]
        if missing:                                   # a best unit outside the most variable ones (or a gate)
            more = explain_units_of(ckpt, text, units=missing, contexts=False).table
            best = pd.concat([best, more[more["rank"] == 1].set_index("unit")])
        for f in varying:
            out[f"{f}_iou"] = float(best.at[out[f"{f}_unit"], "iou_heldout"])
    if sample_chars:
        out["sample"] = (ckpt.train.get("final_sample_t05") or "")[:sample_chars]
    return out


@click.command("sweep")
@click.argument("spec")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="A dask scheduler (tcp://host:8786); default: a LocalCluster on this machine.")
@click.option("--workers", type=click.IntRange(min=1, max=256), default=2, show_default=True,
              help="Worker processes of the LocalCluster.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@threads_option
def sweep_cmd(spec, scheduler, workers, as_json):
    """Train and probe every combination of a grid (cells x corpora x sizes x seeds) as independent tasks on
    dask.distributed; finished tasks are never rerun, a task whose worker dies resumes from its checkpoint.

    Example: neuroscope sweep zoo.toml --workers 2    (docs/cli.md shows a spec)
    """
    from ..errors import UserError
    from ..features import FEATURES
    from ..train import read_spec, run_sweep
    s = read_spec(spec)
    unknown = [f for f in s.measure.get("features", []) if f not in FEATURES]
    if unknown or set(s.measure) - MEASURE_KEYS:                       # refused before any task runs
        raise UserError(f"[measure] takes features (known ones), {', '.join(sorted(MEASURE_KEYS - {'features'}))}; "
                        f"got {unknown or sorted(set(s.measure) - MEASURE_KEYS)}")
    table = run_sweep(s, scheduler=scheduler, workers=workers, measure=probe_measure, progress=not as_json)
    if as_json:
        echo_json(table.to_dict(orient="records"))
        return
    click.echo(table.to_string(index=False))
    click.echo(f"wrote {s.out / 'results.json'}")
