"""The numbers a report reads off its excerpt: unit values, gate saturation, the model's guesses.

    >>> values, saturation = record_units(model, ids, [Unit(2, "c", 323)])
    >>> values["l2.c.323"]                          # float32 [len(ids)]
    >>> pred = predict(model, ids)                  # top_ids, top_p [N, k], p_actual [N]

Each reads the excerpt once, as one stream from a zero state, chunk by chunk, and keeps only what
the report shows (selected columns, per-unit counts), so memory stays bounded by the excerpt.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..evaluate import iter_logits
from ..names import Unit, gate_state, parse_quantity, quantity_name, squashes
from ..record import iter_states
from ..stats import tanh_

TOP_K = 5                  # guesses kept per character
SATURATED = (0.1, 0.9)     # a gate is left-/right-saturated below / above these (Karpathy et al. 2015)


def saturation_gates(cell: str) -> tuple[str, ...]:
    """The sigmoid gates whose saturation the paper plots: forget, input, output (LSTM); reset, update (GRU)."""
    return {"lstm": ("f", "i", "o"), "gru": ("r", "z")}.get(cell, ())


@torch.no_grad()
def record_units(model, ids: np.ndarray, units: list[Unit], gates: bool = True, chunk: int = 1024,
                 progress: bool = False) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """One pass over ids: the selected units' values and the gates' saturation.

    Returns ({unit id: float32 [len(ids)]}, DataFrame with one row per (layer, gate, unit) and
    columns left, right: the fraction of characters where the gate was < 0.1, > 0.9).
    Only the selected columns and per-unit counts are kept, never [len(ids), H] per chunk.
    """
    cfg = model.config
    sat = saturation_gates(cfg.cell) if gates else ()
    gate_keys = [(layer, g, quantity_name(layer, gate_state(g))) for layer in range(cfg.num_layers) for g in sat]
    states = sorted({u.state for u in units} | {gate_state(g) for g in sat})
    cols: dict[str, list[np.ndarray]] = {u.id: [] for u in units}
    left = {name: np.zeros(cfg.hidden_size) for _, _, name in gate_keys}
    right = {name: np.zeros(cfg.hidden_size) for _, _, name in gate_keys}
    for _, acts in iter_states(model, ids, states=tuple(states), chunk=chunk, progress=progress):
        for u in units:
            cols[u.id].append(np.asarray(acts[u.quantity][:, u.index], dtype=np.float32))
        for _, _, name in gate_keys:
            g = acts[name]
            left[name] += (g < SATURATED[0]).sum(0)
            right[name] += (g > SATURATED[1]).sum(0)
    values = {k: np.concatenate(v) for k, v in cols.items()}
    rows = [pd.DataFrame({"layer": layer, "gate": g, "unit": np.arange(cfg.hidden_size),
                          "left": left[name] / len(ids), "right": right[name] / len(ids)})
            for layer, g, name in gate_keys]
    saturation = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["layer", "gate", "unit", "left", "right"])
    return values, saturation


@torch.no_grad()
def predict(model, ids: np.ndarray, k: int = TOP_K, chunk: int = 2048) -> dict[str, np.ndarray]:
    """The model's guesses over a span read as one stream from a zero state.

    Returns top_ids int [N, k] and top_p float [N, k] (guesses for character t+1 after reading
    ids[:t+1]), and p_actual float [N] (the probability given to ids[t] before reading it; NaN at t=0).
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=device)       # [N]
    top_ids, top_p, p_actual = [], [], [np.array([np.nan])]
    for s, logits in iter_logits(model, x[None], chunk):
        probs = torch.softmax(logits[0], dim=-1)                                # [T, V]
        p, i = probs.topk(min(k, probs.shape[1]), dim=-1)
        top_ids.append(i.cpu().numpy())
        top_p.append(p.cpu().numpy())
        nxt = x[s + 1:s + 1 + probs.shape[0]]                                  # the characters that came next
        p_actual.append(probs[torch.arange(len(nxt), device=device), nxt].cpu().numpy())
    return {"top_ids": np.concatenate(top_ids), "top_p": np.concatenate(top_p),
            "p_actual": np.concatenate(p_actual)[:len(ids)]}
