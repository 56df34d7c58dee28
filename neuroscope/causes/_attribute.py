"""Attribution through time: which earlier characters drive a unit (or a latent) at one character.

    >>> a = attribute(ckpt, text, "l2.c.323", at=1234, window=100)
    >>> a.table            # position, offset, char, occlusion, ig: one row per character of the window
    >>> a.completeness     # |sum(ig) - (value - baseline value)| / |value - baseline value|

The window is the `window` characters before `at` and `at` itself; what came before it is read once and
held fixed. Both methods read the unit's shown value (tanh(c) for a cell, h; a latent's activation)
after character `at`:
- occlusion: each character of the window replaced by `replace` (a space by default), all of them in one
  batched pass; a character's score is value(clean) - value(replaced), exact for that replacement;
- integrated gradients (Sundararajan et al. 2017) over the input embeddings of the window, from the
  same window with every character replaced (the baseline), the path integral taken in float64 on an
  adaptive grid (`steps` intervals, then more where the value turns) until the scores sum to value -
  baseline value within 0.5% (completeness); the error reached is reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..checkpoint import model_and_vocab
from ..config import is_int
from ..errors import UserError
from ..names import Latent, parse_latent, parse_unit
from ._patch import encode_text

METHODS = ("occlusion", "ig")
MAX_WINDOW = 2_000
MAX_STEPS = 1_024
MAX_NODES = 2_048         # points on the integrated-gradients path, at most


@dataclass
class Attribution:
    """table: position, offset (position - at), char, occlusion, ig; value: the unit's value at `at`;
    baseline: its value with every character of the window replaced; completeness: the relative error of
    sum(ig) against value - baseline."""

    unit: str
    at: int
    value: float
    baseline: float
    completeness: float
    table: pd.DataFrame

    def to_json(self) -> dict:
        return {"unit": self.unit, "at": self.at, "value": self.value, "baseline": self.baseline,
                "completeness": self.completeness, "characters": self.table.to_dict(orient="records")}


def attribute(model, text: str, unit, at: int, window: int = 100, *, methods=METHODS, replace: str = " ",
              steps: int = 32, dictionary=None, vocab=None) -> Attribution:
    """Occlusion and integrated-gradient scores of the window before `at` for `unit` (a unit id such as
    "l2.c.323", or a latent id "l1.c/d.12" of `dictionary`); methods: either or both of METHODS (a method
    left out gives NaN scores). See the module docstring."""
    net, vocab = model_and_vocab(model, vocab)
    ids = encode_text(vocab, text, "text")
    if not (is_int(at) and 0 <= at < len(ids)):
        raise UserError(f"at must be a character of the text (0..{len(ids) - 1}), got {at!r}", param="at")
    if not (is_int(window) and 1 <= window <= MAX_WINDOW):
        raise UserError(f"window must be a whole number from 1 to {MAX_WINDOW:,}, got {window!r}", param="window")
    if not (is_int(steps) and 2 <= steps <= MAX_STEPS):
        raise UserError(f"steps must be a whole number from 2 to {MAX_STEPS:,}, got {steps!r}", param="steps")
    if not (isinstance(replace, str) and len(replace) == 1 and replace in vocab.chars):
        raise UserError(f"replace must be one character of the model's vocabulary, got {replace!r}", param="replace")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not methods or set(methods) - set(METHODS):
        raise UserError(f"methods must be some of {', '.join(METHODS)}, got {methods!r}", param="methods")
    read = _reader(net, unit, dictionary)
    lo = max(0, at - window)
    net.eval()
    with torch.no_grad():
        _, state = net(torch.as_tensor(ids[:lo])[None]) if lo else (None, None)
    seg = torch.as_tensor(ids[lo:at + 1])
    rid, nan = vocab.chars.index(replace), np.full(len(seg), np.nan)
    occ, value = _occlusion(net, seg, state, read, rid) if "occlusion" in methods else (nan, None)
    ig, value, base = _integrated_gradients(net, seg, state, read, steps, rid) if "ig" in methods else \
        (nan, value, float("nan"))
    gap = value - base
    completeness = abs(float(ig.sum()) - gap) / max(abs(gap), 1e-12) if "ig" in methods else float("nan")
    table = pd.DataFrame({"position": np.arange(lo, at + 1), "offset": np.arange(lo, at + 1) - at,
                          "char": [vocab.chars[int(i)] for i in seg], "occlusion": occ, "ig": ig})
    return Attribution(read.name, int(at), value, base, completeness, table)


class _Read:
    """The value attributed: a unit's shown value, or a latent's activation, from a layer's final state."""

    def __init__(self, name: str, layer: int, state: str, index: int, dictionary=None, last=None):
        self.name, self.layer, self.state, self.index, self.d = name, layer, state, index, dictionary
        self.last = last or _torch_last

    def __call__(self, final) -> torch.Tensor:
        """final: the rnn's last state -> [B]."""
        raw = self.last(final, self.state)[self.layer]                      # [B, H]
        v = torch.tanh(raw) if self.state == "c" else raw     # stats.shown, out of place: autograd runs through it
        if self.d is None:
            return v[:, self.index]
        return self.d.sae.encode(v.to(self.d.sae.W_dec))[:, self.index]


def _torch_last(final, state: str) -> torch.Tensor:
    """h or c [layers, B, H] from the last state of an nn.LSTM ((h, c)), nn.GRU or nn.RNN (h)."""
    h, c = final if isinstance(final, tuple) else (final, None)
    return c if state == "c" else h


def _reader(net, unit, dictionary) -> _Read:
    if isinstance(unit, str) and "/d." in unit or isinstance(unit, Latent):
        if dictionary is None:
            raise UserError(f"{unit} is a latent: give the dictionary it belongs to", param="dictionary")
        lat = unit if isinstance(unit, Latent) else parse_latent(unit, dictionary.sae.d_sae)
        if lat.quantity != dictionary.quantity:
            raise UserError(f"{lat.id} is not a latent of the dictionary over {dictionary.quantity}", param="unit")
        q = parse_unit(f"{lat.id.split('/')[0]}.0", net.config)
        return _Read(lat.id, q.layer, q.state, lat.index, dictionary, getattr(net.rnn, "last_values", None))
    u = parse_unit(str(unit), net.config)
    if u.state not in ("h", "c"):
        raise UserError(f"attribution reads h or c units, not the gate {u.id}", param="unit")
    return _Read(u.id, u.layer, u.state, u.index, last=getattr(net.rnn, "last_values", None))


def _expand(state, n: int):
    if state is None:
        return None
    return tuple(s.expand(-1, n, *s.shape[2:]).contiguous() for s in state) if isinstance(state, tuple) else \
        state.expand(-1, n, -1).contiguous()


@torch.no_grad()
def _occlusion(net, seg: torch.Tensor, state, read: _Read, replace_id: int) -> tuple[np.ndarray, float]:
    """(value(clean) - value(character i replaced) for every i of the segment, value(clean)): one batch."""
    n = len(seg)
    x = seg[None].repeat(n + 1, 1)
    x[torch.arange(1, n + 1), torch.arange(n)] = replace_id
    _, final = net.rnn(net.encoder(x), _expand(state, n + 1))
    v = read(final).double()
    return (v[0] - v[1:]).numpy(), float(v[0])


def _integrated_gradients(net, seg: torch.Tensor, state, read: _Read, steps: int, replace_id: int,
                          tol: float = 0.005):
    """(scores [n], value, baseline value) along the straight path from the baseline (every character of the
    window replaced by `replace_id`) to the window's own embeddings, in float64.

    The path integral is taken by the trapezoid rule on an adaptive grid: `steps` even intervals first, then
    the intervals whose trapezoid misses their own change f(b) - f(a) most are halved, 64 at a time, until
    the scores sum to the whole change within `tol` (relative) or MAX_NODES are used. Zero embeddings, the
    usual baseline, drive these LSTMs into a regime where the value swings at every 1e-3 of the path
    (|df/dalpha| up to 1e7 on wp_lstm2x128); a window of spaces keeps the path among real inputs."""
    net = _float64(net)
    state = None if state is None else tuple(s.double() for s in state) if isinstance(state, tuple) else state.double()
    with torch.no_grad():
        emb = net.encoder(seg[None])[0]                                       # [n, E]
        base = net.encoder(torch.full_like(seg, replace_id))
    nodes = list(np.linspace(0.0, 1.0, steps + 1))
    f, g = _values_and_gradients(net, emb, base, state, read, nodes)
    while True:
        order = np.argsort(nodes)
        a = np.asarray(nodes)[order]
        fa, ga = f[order], g[order]
        parts = (a[1:] - a[:-1])[:, None] * 0.5 * (ga[1:] + ga[:-1])                # [intervals, n]
        est = parts.sum(1)
        gap = fa[-1] - fa[0]
        miss = np.abs(est - (fa[1:] - fa[:-1]))
        if abs(est.sum() - gap) <= tol * max(abs(gap), 1e-12) or len(nodes) >= MAX_NODES:
            return parts.sum(0), float(fa[-1]), float(fa[0])
        worst = np.argsort(-miss)[:min(64, MAX_NODES - len(nodes))]
        new = list((a[worst] + a[worst + 1]) / 2)
        fn, gn = _values_and_gradients(net, emb, base, state, read, new)
        nodes, f, g = nodes + new, np.concatenate([f, fn]), np.concatenate([g, gn])


def _float64(net):
    """A float64 copy of the model (its weights are small; float32 gradients leave about 0.5% of noise)."""
    import copy
    return copy.deepcopy(net).double().eval()


def _values_and_gradients(net, emb, base, state, read: _Read, alphas) -> tuple[np.ndarray, np.ndarray]:
    """f(base + alpha (emb - base)) [m] and the path's derivative in alpha split by character,
    grad . (emb - base) [m, n]; one batched forward and backward."""
    alpha = torch.as_tensor(np.asarray(alphas), dtype=torch.float64)
    step = emb - base
    with torch.enable_grad():
        path = (base[None] + alpha[:, None, None] * step[None]).requires_grad_(True)   # [m, n, E]
        _, final = net.rnn(path, _expand(state, len(alphas)))
        v = read(final)
        (grad,) = torch.autograd.grad(v.sum(), path)                           # the model's own .grad untouched
    per_char = (grad * step[None]).sum(-1)                                     # [m, n]
    return v.detach().double().numpy(), per_char.numpy()
