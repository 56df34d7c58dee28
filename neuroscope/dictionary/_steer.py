"""Steering by latents: add a latent's decoder direction to the state at every step of the recurrence.

    >>> with steered(model, d, {"l1.c/d.123": 4.0}):
    ...     text = model.sample(vocab, 500)

The direction is added to the shown value the dictionary reads: h, or for a cell tanh(c_t) as
h_t = o_t * tanh(c_t) reads it (the hooks' SHOWN_C edit; the memory c_t is left as it is, as in the
held-out splice). `+4` means: what the layer passes on, as if that latent's activation were 4 higher.
"""
from __future__ import annotations

import math

import torch

from ..errors import UserError
from ..hooks import SHOWN_C, Trace
from ..names import parse_quantity
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
    where = d.quantity[:-1] + SHOWN_C if parse_quantity(d.quantity).squash else d.quantity

    def add(value, t):
        return value.add_(direction.to(value))
    return Trace(model, names=list(names), edit={where: add})
