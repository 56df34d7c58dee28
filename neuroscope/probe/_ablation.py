"""The ablation stage of neuroscope.probe: does the model use a feature's top units?

    >>> table, notes = ablation(net, ids, features, ranking, cfg)     # one row per feature

The top cfg.ablate units of each feature (by |r|) are zeroed inside the recurrence, and the change
of the per-character loss is compared with cfg.ablate_draws random sets of as many units from the
same layers and states, the top set and every random set read side by side in one batched pass
(record.zeroed_losses). Loss k predicts ids[k+1] from the state after ids[k], so it counts as "on"
where the label of character k is nonzero.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..names import quantity_name
from ..record import char_losses, zeroed_losses
from ._config import ProbeConfig

COLUMNS = ["feature", "k", "units", "chars", "on_chars", "off_chars", "base_loss", "delta_on", "delta_off",
           "random_on_mean", "random_on_std", "random_off_mean", "random_off_std", "draws"]


def ablation(net, ids: np.ndarray, features: dict[str, np.ndarray], ranking: pd.DataFrame,
             cfg: ProbeConfig, dictionary=None) -> tuple[pd.DataFrame, list[str]]:
    """(table, notes): the loss change (nats/char) from zeroing each feature's top cfg.ablate units on the
    first cfg.ablate_chars characters, on and off the feature, beside random unit sets; columns COLUMNS.
    ranking: ProbeResult.ranking (its first rows per feature are the units zeroed). Empty if not cfg.ablate.
    dictionary: the ranking is of its latents; their part of the reconstruction is taken out instead
    (dictionary.latent_zeroed_losses), against random sets of its latents."""
    n = min(len(ids), cfg.ablate_chars)
    if not cfg.ablate or n < 2:
        return pd.DataFrame(columns=COLUMNS), []
    ids = ids[:n]
    base = char_losses(net, ids, chunk=cfg.chunk, progress=cfg.progress)  # [n-1], the model's own forward
    rng = np.random.default_rng(cfg.seed)
    H = net.config.hidden_size
    rows, notes = [], []
    for name, lab in features.items():
        on = np.asarray(lab[:n - 1]) != 0
        top = ranking[ranking["feature"] == name].head(cfg.ablate)
        if dictionary is None:
            delta = _zeroed_units(net, ids, top, H, rng, cfg) - base
        else:
            delta = _zeroed_latents(dictionary, net, ids, top, rng, cfg) - base
        d_on, d_off = _on_off(delta, on)                                # each [1 + draws]
        if not on.any():
            notes.append(f"{name} is never on in the ablation span (first {n:,} characters)")
        rows.append([name, cfg.ablate, ",".join(top["unit_id"]), n, int(on.sum()), int((~on).sum()),
                     float(base.mean()), d_on[0], d_off[0], *_mean_std(d_on[1:]), *_mean_std(d_off[1:]),
                     cfg.ablate_draws])
    return pd.DataFrame(rows, columns=COLUMNS), notes


def _zeroed_units(net, ids, top: pd.DataFrame, H: int, rng, cfg: ProbeConfig) -> np.ndarray:
    """[1 + draws, n-1] losses, the top units zeroed, then random sets of as many from the same quantities,
    in one pass: the slow part of --ablate (a minute or more), so it shows a bar."""
    groups: dict[str, list[int]] = {}                                   # {quantity: units zeroed}
    for layer, state, u in zip(top["layer"], top["state"], top["unit"]):
        groups.setdefault(quantity_name(layer, state), []).append(int(u))
    draws = [{q: rng.choice(np.setdiff1d(np.arange(H), us), size=len(us), replace=False).tolist()
              for q, us in groups.items()} for _ in range(cfg.ablate_draws)]
    return zeroed_losses(net, ids, [groups, *draws], cfg.chunk, progress=cfg.progress)


def _zeroed_latents(d, net, ids, top: pd.DataFrame, rng, cfg: ProbeConfig) -> np.ndarray:
    """_zeroed_units for a dictionary's latents."""
    from ..dictionary import latent_zeroed_losses
    chosen = [int(u) for u in top["unit"]]
    others = np.setdiff1d(np.arange(d.sae.d_sae), chosen)
    draws = [rng.choice(others, size=len(chosen), replace=False).tolist() for _ in range(cfg.ablate_draws)]
    return latent_zeroed_losses(d, net, ids, [chosen, *draws], cfg.chunk, progress=cfg.progress)


def _on_off(delta: np.ndarray, on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean loss change where the feature is on, and where it is off (NaN where none are)."""
    nan = np.full(len(delta), np.nan)
    return (delta[:, on].mean(1) if on.any() else nan, delta[:, ~on].mean(1) if (~on).any() else nan)


def _mean_std(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std(ddof=1))) if len(v) > 1 else (np.nan, np.nan)
