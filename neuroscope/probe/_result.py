"""ProbeResult: what neuroscope.probe.probe found, as tidy tables, JSON and text.

    >>> result.ranking.head()               # one row per (feature, layer, state, unit), by |r|
    >>> result.top_units("in_quote", 3)     # ["l2.c.323", ...]
    >>> print(result.format("in_quote"))    # the text `neuroscope probe` prints
    >>> result.to_json()                    # strict JSON-ready dicts (NaN -> null)
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field

import pandas as pd

from ..errors import UserError
from ..files import json_ready


@dataclass
class ProbeResult:
    """What probe() found. All tables are tidy pandas DataFrames.

    ranking: one row per (feature, layer, state, unit), sorted by feature (in the order given),
        then abs_r descending. Columns: feature, kind ("binary" | "count"), rank (1 = best),
        layer, state, unit (0-based), unit_id ("l2.c.323"), r (Pearson r of the unit's value, h or
        tanh(c), with the label; whole text), abs_r,
        auroc (binary; sample), mean_on, mean_off (binary; mean activation where the label is 1 / 0,
        whole text), spearman (count; sample), p_value (circular-shift null; sample; NaN for units
        not tested), p_adjusted (Holm or BH over all units, untested units counted as p = 1),
        significant (p_adjusted <= alpha), control_max_abs_r (largest |r| of any unit of the
        random-weights control model with this feature, on about control_chars in windows spread over the text), selectivity (abs_r - control_max_abs_r),
        baseline_max_abs_r / baseline_best (the unit's largest |r| with a char-class baseline, and
        which), flag (comma-joined: "n.s." not significant, "control" selectivity <= 0,
        "char_class" a baseline tracks the unit at least as well; "" = a clean finding).
    topk: feature, k, score, metric ("auroc" | "r2"), penalty, n_fit, n_score: held-out score of a
        probe on the k best units (k = 1, 2, 4, ... up to topk_max: L2; the last row, k = all
        units: the L1 sparse probe).
    sparse: feature, penalty ("l1"), strength (C or alpha chosen by CV), score, metric, n_nonzero
        (units with a nonzero weight), units (all), top_units (the 10 largest weights), n_fit, n_score.
    ablation: feature, k, units, chars, on_chars, off_chars, base_loss, delta_on, delta_off,
        random_on_mean, random_on_std, random_off_mean, random_off_std, draws (nats/char).
    baselines: the ranking's columns for the char-class baseline features, top rows of each.
    meta: what was computed on which characters, the null's and probes' settings, timings, notes.
    """

    ranking: pd.DataFrame
    topk: pd.DataFrame
    sparse: pd.DataFrame
    ablation: pd.DataFrame
    baselines: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(dict.fromkeys(self.ranking["feature"]))

    def top_units(self, feature: str, n: int = 10) -> list[str]:
        """Unit ids of the n units with the largest |r| for a feature, best first."""
        return list(self._rows(feature)["unit_id"].head(n))

    def feature_json(self, feature: str, top: int | None = 20) -> dict:
        """{"feature", "kind", "chars", "control_max_abs_r", "units": [top rows by |r|], "topk",
        "sparse", "ablation"} for one feature; NaN becomes null."""
        rows = self._rows(feature)
        units = rows if top is None else rows.head(top)
        sel = lambda df: df[df["feature"] == feature].drop(columns="feature") if len(df) else df
        return {"feature": feature, "kind": str(rows["kind"].iloc[0]), "chars": int(self.meta["chars"]),
                "control_max_abs_r": json_ready(float(rows["control_max_abs_r"].iloc[0])),
                "units": _records(units.drop(columns=["feature", "kind"])),
                "topk": _records(sel(self.topk)), "sparse": _records(sel(self.sparse)),
                "ablation": _records(sel(self.ablation))}

    def to_json(self, top: int | None = 20) -> dict:
        """{"chars", "features": [feature_json(f) for each feature], "baselines", "meta"}."""
        return {"chars": int(self.meta["chars"]), "features": [self.feature_json(f, top) for f in self.features],
                "baselines": _records(self.baselines), "meta": json_ready(self.meta)}

    def format(self, feature: str, top: int = 20) -> str:
        """One feature as text, as `neuroscope probe` prints it: the null's settings, the top `top`
        rows of the ranking, the control, the top-k curve, the sparse probe and the ablation."""
        rows = self._rows(feature).head(top)
        kind = rows["kind"].iloc[0]
        meta = self.meta
        head = f"{feature} ({kind})"
        if meta["null"].get("computed"):
            nm = meta["null"]
            head += (f": p from {nm['shifts']:,} circular shifts (>= {nm['min_shift']:,} chars) of the first "
                     f"{nm['chars']:,} chars, {nm['correction']} over {nm['family']:,} units")
        lines = [head]
        score = "auroc" if kind == "binary" else "spearman"
        cols = ["rank", "unit_id", "r", score, "p_adjusted", "selectivity", "baseline_best", "baseline_max_abs_r",
                "flag"]
        table = rows[cols].rename(columns={"unit_id": "unit", "baseline_max_abs_r": "|r| baseline",
                                           "baseline_best": "best baseline", "p_adjusted": "p adj"})
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="-"))
        if not math.isnan(rows["control_max_abs_r"].iloc[0]):
            lines.append(f"control model (random weights): max |r| = {rows['control_max_abs_r'].iloc[0]:.3f}")
        tk = self.topk[self.topk["feature"] == feature]
        if len(tk):
            lines.append(f"held-out {tk['metric'].iloc[0]} with the k best units: "
                         + "  ".join(f"k={k}: {s:.3f}" for k, s in zip(tk["k"], tk["score"])))
        sp = self.sparse[self.sparse["feature"] == feature]
        if len(sp):
            s = sp.iloc[0]
            lines.append(f"sparse L1 probe: {s['metric']} {s['score']:.3f} with {s['n_nonzero']} of "
                         f"{s['units']} units (strength {s['strength']:g}); largest weights: {s['top_units']}")
        ab = self.ablation[self.ablation["feature"] == feature]
        if len(ab):
            a = ab.iloc[0]
            lines.append(f"ablating {a['units']}: loss {a['delta_on']:+.4f} nats/char where on, "
                         f"{a['delta_off']:+.4f} where off; {a['draws']} random sets of {a['k']}: "
                         f"{a['random_on_mean']:+.4f} ± {a['random_on_std']:.4f} on, "
                         f"{a['random_off_mean']:+.4f} ± {a['random_off_std']:.4f} off "
                         f"(first {a['chars']:,} chars)")
        return "\n".join(lines)

    def _rows(self, feature: str) -> pd.DataFrame:
        rows = self.ranking[self.ranking["feature"] == feature]
        if rows.empty:
            raise UserError(f"feature {feature!r} was not probed; probed: {', '.join(self.features)}")
        return rows

    def _repr_html_(self) -> str:
        cols = ["unit_id", "r", "auroc", "spearman", "p_adjusted", "selectivity", "baseline_best", "flag"]
        parts = [f"<p>ProbeResult over {self.meta.get('chars', 0):,} characters, "
                 f"{self.meta.get('units', 0):,} units</p>"]
        for f in self.features:
            rows = self.ranking[self.ranking["feature"] == f].head(10)
            parts.append(f"<h4>{html.escape(f)}</h4>")
            parts.append(rows[[c for c in cols if rows[c].notna().any()]].to_html(index=False, float_format="%.3g"))
            for name in ("topk", "sparse", "ablation"):
                df = getattr(self, name)
                if len(df) and (df["feature"] == f).any():
                    parts.append(f"<p>{name}</p>" + df[df["feature"] == f].drop(columns="feature")
                                 .to_html(index=False, float_format="%.3g"))
        return "\n".join(parts)


def _records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as JSON-ready dicts, floats to 6 decimal places (pandas' encoder), NaN -> None."""
    return json.loads(df.to_json(orient="records", double_precision=6)) if len(df) else []
