"""A dictionary's latents over a text: the values every analysis reads for a latent, as it reads a
unit's shown value. A latent's value is its activation (0 where it is not among the k on, or for a
BatchTopK dictionary below its threshold; else positive), computed from the shown value of the
dictionary's quantity (tanh(c) for cells)."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from ..names import Latent, parse_latent, parse_quantity
from ..record import iter_states
from ..stats import Moments


def latents_of(d, names) -> list[Latent]:
    """Latent names ("l1.c/d.12") or Latents, checked against dictionary d (its quantity and size)."""
    out = []
    for name in names:
        latent = parse_latent(name, d.sae.d_sae) if isinstance(name, str) else name
        if latent.quantity != d.quantity:
            raise UserError(f"{latent.id} is not a latent of the dictionary over {d.quantity} (its latents: "
                            f"{d.prefix}.0 to {d.prefix}.{d.sae.d_sae - 1})", param="units")
        out.append(latent)
    return list(dict.fromkeys(out))


@torch.no_grad()
def iter_latents(d, model, ids: np.ndarray, streams="auto", warmup: int = 256, progress=False):
    """Yield (start, float32 latents [n, d_sae]) over ids, block by block (record.iter_states)."""
    state = parse_quantity(d.quantity).state
    for start, acts in iter_states(model, ids, (state,), streams=streams, warmup=warmup, progress=progress):
        yield start, d.latents(torch.from_numpy(acts[d.quantity])).cpu().numpy()


def latent_values(d, model, ids: np.ndarray, latents: list[Latent] | None = None, variance: bool = False,
                  **read) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """float16 [len(ids), len(latents)] of the latents named (None: every latent), one pass; with
    variance=True also each one's variance (float64), from the float32 values. read: iter_latents'
    streams, warmup, progress."""
    cols = np.arange(d.sae.d_sae) if latents is None else np.array([lat.index for lat in latents], dtype=np.int64)
    out = np.empty((len(ids), len(cols)), np.float16)
    moments = Moments()
    for start, z in iter_latents(d, model, ids, **read):
        v = z[:, cols]
        out[start:start + len(v)] = v
        if variance:
            moments.add(v)
    return (out, moments.variance()) if variance else out


def most_variable_latents(d, model, ids: np.ndarray, n: int, **read) -> list[Latent]:
    """The n latents of d whose values vary most over ids (one pass holding only running sums)."""
    moments = Moments()
    for _, z in iter_latents(d, model, ids, **read):
        moments.add(z)
    var = moments.variance()
    order = [int(i) for i in np.argsort(-var, kind="stable") if var[i] > 0][:n]
    return [Latent(d.quantity, i) for i in order]


def latent_quantiles(d, model, ids: np.ndarray, q: float, **read) -> np.ndarray:
    """float32 [d_sae]: each latent's q-quantile over ids, exactly: the ceil(q N)-th smallest of its N
    values, so that a latent is above it at most N - ceil(q N) times. Latents are 0 except at the few on
    per character, so only the non-zero values are kept (at most 4k x N of them) and a latent on at no
    more than N - ceil(q N) characters gets 0. read: iter_latents' streams, warmup, progress."""
    cols, vals, n = [], [], 0
    for _, z in iter_latents(d, model, ids, **read):
        r, c = np.nonzero(z)
        cols.append(c.astype(np.int32))
        vals.append(z[r, c])
        n += len(z)
    cols, vals = np.concatenate(cols), np.concatenate(vals)
    order = np.lexsort((vals, cols))                        # by latent, then by value
    cols, vals = cols[order], vals[order]
    on = np.bincount(cols, minlength=d.sae.d_sae)           # non-zero values per latent
    first = np.cumsum(on) - on                              # where each latent's values start in vals
    rank = math.ceil(q * n - 1e-9) - (n - on)               # 1-based rank of the quantile among them
    out = np.zeros(d.sae.d_sae, np.float32)
    has = rank >= 1
    out[has] = vals[first[has] + rank[has] - 1]
    return out
