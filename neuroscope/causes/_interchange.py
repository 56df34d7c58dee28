"""Interchange interventions for a feature: over pairs of contexts that differ in it, does patching the
feature's units from the source into the base make the model behave like the source?

    >>> b = Behaviour("in_quote", base=lambda y: y == 1, source=lambda y: y == 0, chars='"')
    >>> ps = pairs(text, label(text, "in_quote"), b, n=200)
    >>> r = interchange(ckpt, ps, b, {"top 4": units, "layer 2": "l2"}, random_draws=20)
    >>> r.table            # one row per unit set: accuracy, the share of the effect moved, pairs used

A pair is two windows of `window` characters from one text, the base ending where the feature has its
base value and the source where it has the source value, each followed by the same continuation: the
base's next `horizon` characters. Both read the same characters after the patched step, so the
source's predictions over the continuation are what the patched base should give if the units carry
the feature. The behaviour read is the log-probability of the feature's tell-tale characters (a
closing quote, a line break, a closing brace), averaged over the patched step and the continuation.
A pair is followed when the patched base's readout is nearer the source's than the base's own; pairs
whose two readouts differ by less than `min_gap` nats show no behaviour to follow and are left out.
Patching every state of every layer at that step gives the source's readout exactly, so its accuracy is
1 (tested). Random sets draw the same number of units from the same quantities, `random_draws` times.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..checkpoint import model_and_vocab
from ..errors import UserError
from ..hooks import HookError, Trace
from ..names import parse_quantity, parse_unit, state_names

MAX_PAIRS = 10_000


@dataclass(frozen=True)
class Behaviour:
    """feature: its name; base / source: which label values a base / source context ends on; chars: the
    characters whose probability is the behaviour; window and horizon in characters."""

    feature: str
    base: Callable[[np.ndarray], np.ndarray]
    source: Callable[[np.ndarray], np.ndarray]
    chars: str
    window: int = 200
    horizon: int = 20


@dataclass
class InterchangeResult:
    """table: unit set, units, pairs (with a behaviour gap), accuracy, effect (median share of the gap
    moved), low / high (5th and 95th percentiles over random draws; NaN for a fixed set)."""

    feature: str
    table: pd.DataFrame
    pairs: int


def pairs(text: str, y: np.ndarray, b: Behaviour, n: int = 200, seed: int = 0) -> list[tuple[str, str]]:
    """n (base, source) windows of text (see the module docstring), drawn at random without replacement."""
    if not (isinstance(n, int) and 1 <= n <= MAX_PAIRS):
        raise UserError(f"pairs must be a whole number from 1 to {MAX_PAIRS:,}, got {n!r}", param="n")
    y = np.asarray(y)
    pos = np.arange(len(y))
    inside = (pos >= b.window - 1) & (pos + b.horizon < len(y))
    base_at = pos[inside & np.asarray(b.base(y), bool)]
    source_at = pos[inside & np.asarray(b.source(y), bool)]
    if len(base_at) < n or len(source_at) < n:
        raise UserError(f"the text has {len(base_at):,} base and {len(source_at):,} source positions for "
                        f"{b.feature}; {n:,} pairs need that many of each", param="text")
    rng = np.random.default_rng(seed)
    bs, ss = rng.choice(base_at, n, replace=False), rng.choice(source_at, n, replace=False)
    w = b.window
    return [(text[p - w + 1:p + 1 + b.horizon], text[q - w + 1:q + 1] + text[p + 1:p + 1 + b.horizon])
            for p, q in zip(bs, ss)]


def unit_sets(config, sets: dict, random_draws: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{name: {quantity: unit indices}} from {name: unit ids, a layer ("l2": its h and c), or "all"};
    each set of unit ids gets random_draws sets of as many units from the same quantities."""
    rng = np.random.default_rng(seed)
    H, out = config.hidden_size, {}
    for name, what in sets.items():
        out[name] = _as_units(config, what)
        if random_draws and not isinstance(what, str):
            for d in range(random_draws):
                out[f"{name}: random {d}"] = {q: np.sort(rng.choice(H, len(u), replace=False))
                                              for q, u in out[name].items()}
    return out


def _as_units(config, what) -> dict[str, np.ndarray]:
    everything = state_names(config, ("h", "c"))
    if what == "all":
        return {q: np.arange(config.hidden_size) for q in everything}
    if isinstance(what, str):
        layer = _layer(what, config)
        return {q: np.arange(config.hidden_size) for q in everything if parse_quantity(q).layer == layer}
    units: dict[str, list[int]] = {}
    for uid in what:
        u = parse_unit(uid, config)
        if u.state not in ("h", "c"):
            raise UserError(f"cannot patch {u.id}: a patch replaces h or c, not a gate", param="sets")
        units.setdefault(u.quantity, []).append(u.index)
    return {q: np.array(sorted(set(v))) for q, v in units.items()}


def _layer(text: str, config) -> int:
    if not (text.startswith("l") and text[1:].isdigit() and int(text[1:]) < config.num_layers):
        raise UserError(f"bad layer {text!r}: write l0 .. l{config.num_layers - 1}, or 'all'", param="sets")
    return int(text[1:])


@torch.no_grad()
def interchange(model, pair_texts: list[tuple[str, str]], b: Behaviour, sets: dict, random_draws: int = 20,
                min_gap: float = 0.1, seed: int = 0, vocab=None) -> InterchangeResult:
    """Interchange accuracy of each unit set (see the module docstring and unit_sets)."""
    net, vocab = model_and_vocab(model, vocab)
    net.eval()
    tell = [vocab.chars.index(c) for c in b.chars if c in vocab.chars]
    if not tell:
        raise UserError(f"none of the characters {b.chars!r} is in the model's vocabulary", param="chars")
    n = b.window + b.horizon
    if not pair_texts or any(len(p) != n or len(q) != n for p, q in pair_texts):
        raise UserError(f"pairs must be (base, source) texts of window + horizon = {n} characters each (causes.pairs "
                        "makes them)", param="pair_texts")
    if any(set(p + q) - set(vocab.chars) for p, q in pair_texts):
        raise UserError("a pair holds characters this model's vocabulary lacks: pairs from a text for another model?",
                        param="pair_texts")
    base = torch.as_tensor(np.stack([vocab.encode(p) for p, _ in pair_texts]))
    source = torch.as_tensor(np.stack([vocab.encode(s) for _, s in pair_texts]))
    at = b.window - 1                                                  # the patched step: the window's last
    groups = unit_sets(net.config, sets, random_draws, seed)
    state_b, m_base, _ = _readout_after(net, base, at, tell)
    quantities = sorted({q for g in groups.values() for q in g})
    _, m_source, src = _readout_after(net, source, at, tell, quantities)
    m_patch = _patched(net, base[:, at:], state_b, src, groups, tell)
    gap = m_source - m_base
    use = np.abs(gap) >= min_gap
    rows = []
    for name, m in m_patch.items():
        follows = np.abs(m - m_source) < np.abs(m - m_base)
        share = (m - m_base) / np.where(use, gap, 1)
        rows.append({"set": name, "units": sum(len(u) for u in groups[name].values()),
                     "accuracy": float(follows[use].mean()) if use.any() else np.nan,
                     "effect": float(np.median(share[use])) if use.any() else np.nan})
    return InterchangeResult(b.feature, _summarise(pd.DataFrame(rows)), int(use.sum()))


def _readout_after(net, x, at, tell, record=()):
    """Run x [P, T]: the state before step `at`, the readout over steps at.., and (record) the recorded
    quantities at step at as {quantity: [P, H]}."""
    _, state = net(x[:, :at])
    try:
        with Trace(net, names=list(record)) as tr:
            logits, _ = net(x[:, at:], state)
    except HookError as exc:
        raise UserError(str(exc)) from None
    got = {q: tr[q][:, 0].clone() for q in record}
    return state, _readout(logits, tell), got


def _readout(logits: torch.Tensor, tell) -> np.ndarray:
    """Mean over steps of log P(any of the tell-tale characters): [P]."""
    return torch.log_softmax(logits.float(), -1)[..., tell].logsumexp(-1).mean(-1).numpy()


def _patched(net, tail, state, src, groups, tell) -> dict[str, np.ndarray]:
    """Readouts of the base's tail with each group's units replaced at its first step: one batched run."""
    P, names = tail.shape[0], list(groups)
    H = net.config.hidden_size
    masks = {q: torch.zeros(len(names), 1, H, dtype=torch.bool) for q in src}
    for g, name in enumerate(names):
        for q, u in groups[name].items():
            masks[q][g, 0, torch.as_tensor(u, dtype=torch.long)] = True
    masks = {q: m.expand(-1, P, -1).reshape(-1, H) for q, m in masks.items()}
    values = {q: v.repeat(len(names), 1) for q, v in src.items()}
    edit = {q: (lambda value, t, q=q: torch.where(masks[q], values[q], value) if t == 0 else value) for q in src}
    rep = tuple(s.repeat(1, len(names), 1) for s in state) if isinstance(state, tuple) else state.repeat(1, len(names), 1)
    try:
        with Trace(net, names=[], edit=edit):
            logits, _ = net(tail.repeat(len(names), 1), rep)
    except HookError as exc:
        raise UserError(str(exc)) from None
    m = _readout(logits, tell).reshape(len(names), P)
    return dict(zip(names, m))


def _summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Random draws folded into one row per set: the median, and the 5th and 95th percentiles."""
    fixed = df[~df["set"].str.contains(": random ")].copy()
    fixed["low"], fixed["high"] = np.nan, np.nan
    draws = df[df["set"].str.contains(": random ")].copy()
    if len(draws):
        draws["set"] = draws["set"].str.replace(r" \d+$", "", regex=True)
        agg = draws.groupby("set", sort=False).agg(units=("units", "first"), accuracy=("accuracy", "median"),
                                                   effect=("effect", "median"),
                                                   low=("accuracy", lambda a: np.percentile(a, 5)),
                                                   high=("accuracy", lambda a: np.percentile(a, 95))).reset_index()
        fixed = pd.concat([fixed, agg], ignore_index=True)
    return fixed.reset_index(drop=True)
