"""How good a dictionary is, on text it was not trained on.

- fvu: fraction of variance unexplained, sum |x - x_hat|^2 over sum |x - mean|^2 (the shown values);
- l0: mean latents on per character; dead: the share of latents never on over the text;
- loss_recovered: the quantity replaced by its reconstruction at every step *inside* the recurrence
  (the hooks' edit path: later steps, upper layers and the logits see the reconstruction, so errors
  compound as they would), against the clean model and the quantity held at its mean:
  (L_ablated - L_spliced) / (L_ablated - L_clean). 1 is perfect, 0 no better than the mean.

For a cell the dictionary reads tanh(c), the value the cell passes on (h_t = o_t * tanh(c_t)), and
into="output" (the default) splices the reconstruction exactly there (the hooks' SHOWN_C edit): what
the cell passes on is the reconstruction, its memory c_t is the model's own. into="memory" splices
atanh(x_hat) into c_t itself (clamped at SATURATED; where the state and its reconstruction are both
saturated the same way, the state is kept, since tanh cannot tell c = 9 from c = 26,000): a small
error near tanh = +-1 then becomes an error of several units in the memory, which the reconstruction
of tanh(c) was never asked to avoid. For h both are the same. A dictionary that reconstructs exactly
gives the clean loss either way (tests/test_dictionary.py).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from ..names import parse_quantity
from ..record import edited_losses, iter_states
from ..stats import Moments, shown

SATURATED = 1 - 1e-6          # |tanh(c)| above this is saturated: atanh would be 7.25 whatever c was
LOSS_STREAMS = 16             # the held-out text is read as this many pieces side by side, for speed


def unshow(x_hat: torch.Tensor, value: torch.Tensor, squash: bool) -> torch.Tensor:
    """The state to splice in for a reconstruction of the shown value: x_hat itself for h, atanh(x_hat)
    for c, keeping a saturated c whose reconstruction is saturated the same way (module docstring)."""
    if not squash:
        return x_hat
    clamped = x_hat.clamp(-SATURATED, SATURATED)
    keep = (clamped.abs() >= SATURATED) & (torch.sign(clamped) == torch.sign(value)) & (value.abs() >= 7.25)
    return torch.where(keep, value, torch.atanh(clamped))


@torch.no_grad()
def held_out_quality(d, model, ids: np.ndarray, progress: bool = False, streams="auto", warmup: int = 256,
                     into: str = "output") -> dict:
    """{"fvu", "l0", "dead", "loss_clean", "loss_spliced", "loss_ablated", "loss_recovered", "chars",
    "into"} of Dictionary d on ids (int64 [N], held-out text); into: where a cell's reconstruction is
    spliced, "output" or "memory" (module docstring)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < 2 * LOSS_STREAMS:
        raise UserError(f"held-out text too short to measure a dictionary: {len(ids)} characters", param="held_out")
    if into not in ("output", "memory"):
        raise UserError(f"into must be output or memory, got {into!r}", param="into")
    out = _reconstruction(d, model, ids, streams, warmup)
    out.update(_losses(d, model, ids, out.pop("mean"), progress, into), into=into)
    out["chars"] = int(len(ids))
    return out


def _reconstruction(d, model, ids, streams, warmup) -> dict:
    q = parse_quantity(d.quantity)
    device = d.sae.W_dec.device
    moments, sse, on, fired, n = Moments(), 0.0, 0, torch.zeros(d.sae.d_sae, dtype=torch.bool), 0
    for _, acts in iter_states(model, ids, (q.state,), streams=streams, warmup=warmup, chunk=8192):
        x = shown(acts[d.quantity], q.squash, inplace=True)
        moments.add(x)
        xt = torch.from_numpy(x).to(device)
        values, indices = d.sae.active(d.sae.pre_acts(xt))
        sse += float((xt - d.sae.decode_sparse(values, indices)).pow(2).sum())
        active = values > 0
        on += int(active.sum())
        fired[indices[active].cpu()] = True
        n += len(x)
    total = float(moments.variance().sum()) * n
    return {"fvu": sse / total if total > 0 else float("nan"), "l0": on / n,
            "dead": float(1 - fired.float().mean()), "mean": torch.as_tensor(moments.mean, dtype=torch.float32)}


def _losses(d, model, ids, mean: torch.Tensor, progress: bool, into: str) -> dict:
    """Mean next-character loss, clean, spliced and mean-ablated, in one batched pass: the text cut into
    S pieces read side by side, three times over (rows [0, S) clean, [S, 2S) spliced, [2S, 3S) ablated)."""
    S = LOSS_STREAMS
    L = len(ids) // S
    x = torch.as_tensor(ids[:S * L].reshape(S, L)).repeat(3, 1).to(next(model.parameters()).device)
    mean = mean.to(x.device)
    sae = d.sae
    in_memory = parse_quantity(d.quantity).squash and into == "memory"

    def splice(value, t):                       # value: the state (h, c) or tanh(c) as h reads it
        part = value[S:2 * S]
        seen = torch.tanh(part) if in_memory else part
        x_hat = sae(seen.to(sae.W_dec.device)).to(value.device)
        value[S:2 * S] = unshow(x_hat, part, True) if in_memory else x_hat
        rest = mean.expand_as(value[2 * S:])
        value[2 * S:] = unshow(rest, value[2 * S:], True) if in_memory else rest
        return value
    where = d.quantity if in_memory else d.edit_point
    nats = edited_losses(model, x, {where: splice}, 1024, progress)           # [3S, L-1]
    clean, spliced, ablated = nats.reshape(3, -1).astype(np.float64).mean(1).tolist()
    gap = ablated - clean
    return {"loss_clean": clean, "loss_spliced": spliced, "loss_ablated": ablated,
            "loss_recovered": (ablated - spliced) / gap if gap > 0 else float("nan")}
