"""Steering by latents: add a latent's decoder direction to the state at every step of the recurrence.

    >>> with steered(model, d, {"l1.c/d.123": 4.0}):
    ...     text = model.sample(vocab, 500)

The direction is added to the shown value the dictionary reads: h, or for a cell tanh(c_t) as
h_t = o_t * tanh(c_t) reads it (the hooks' SHOWN_C edit; the memory c_t is left as it is, as in the
held-out splice). `+4` means: what the layer passes on, as if that latent's activation were 4 higher.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from ..hooks import Trace
from ..record import edited_losses
from ._latents import latents_of

MAX_STRENGTH = 1000.0          # a latent's activation is of order 1; beyond this is a typo


def parse_steer(text: str) -> tuple[str, float]:
    """"l1.c/d.123=+4" -> ("l1.c/d.123", 4.0); UserError for anything else."""
    name, sep, value = str(text).partition("=")
    try:
        strength = float(value)
    except ValueError:
        strength = math.nan
    if not sep or not math.isfinite(strength) or abs(strength) > MAX_STRENGTH:
        raise UserError(f"bad steer {text!r}: write LATENT=STRENGTH, e.g. l1.c/d.123=+4 (|STRENGTH| <= "
                        f"{MAX_STRENGTH:g})", param="steer")
    return name.strip(), strength


def steered(model, d, strengths: dict, names=()) -> Trace:
    """A Trace over model that adds sum(strength * decoder row) of the latents named ({"l1.c/d.123": 4.0})
    to d's shown value after every step; enter it around any forward or model.sample. names: quantities
    to record meanwhile (a Trace inside another over the same module would replace its edits)."""
    if not strengths:
        raise UserError("name at least one latent to steer by", param="steer")
    pairs = [(latents_of(d, [name])[0].index, float(s)) for name, s in strengths.items()]
    rows = d.sae.W_dec.detach()[[i for i, _ in pairs]]
    direction = (torch.tensor([s for _, s in pairs]).to(rows)[:, None] * rows).sum(0)      # [d_in]
    def add(value, t):
        return value.add_(direction.to(value))
    return Trace(model, names=list(names), edit={d.edit_point: add})



@torch.no_grad()
def latent_zeroed_losses(d, model, ids, latent_sets, chunk: int = 4096, progress: bool = False):
    """record.zeroed_losses for latents: float32 [len(latent_sets), len(ids)-1], row b the loss with the
    latents of latent_sets[b] (indices) zeroed at every step: their part of the reconstruction,
    sum z_j * W_dec[j], taken from d's shown value (tanh(c) as h reads it, or h), the rest left as it
    is. One batched pass, each row from a zero state at ids[0]."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2:
        raise UserError("losses need at least 2 characters (chars >= 2)", param="chars")
    mask = torch.zeros(len(latent_sets), d.sae.d_sae)
    for b, latents in enumerate(latent_sets):
        mask[b, list(latents)] = 1.0

    def zero(value, t):
        z = d.sae.encode(value) * mask.to(value)
        return value.sub_(z @ d.sae.W_dec)
    x = torch.as_tensor(ids)[None].expand(len(latent_sets), -1)
    return edited_losses(model, x, {d.edit_point: zero}, chunk, progress)
