"""Patching between two inputs: the base text runs with part of its state replaced, at chosen steps, by
the state the source text had, and every later prediction is compared with the clean base's.

    >>> r = patch(ckpt, base='He said "yes', source="He said, yes", at=11)        # every state
    >>> r = patch(ckpt, base, source, at=[40], what=["l2.c.323"], free=200)         # one unit, then sample
    >>> r.steps        # one row per step from the first patch on: p(next), loss, KL, top 5, clean and patched
    >>> r.summary()    # loss_clean, loss_patched, kl_mean, kl_max, the continuations in free mode

Both runs read the same characters side by side in one batch, so they differ only by the patch.
Forced (free=0): the base's own characters are read after the patch. Free (free=N): the base is read
up to its last patched step and N characters are then sampled, clean and patched, with one uniform
draw per step shared by the two (identical distributions give identical characters); a third row
reads the patched run's characters without the patch, so the distributions compared at each step
follow the same input. A patch at step t replaces the state after reading character t.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd
import torch

from ..checkpoint import model_and_vocab
from ..config import configured, is_int
from ..errors import UserError
from ..hooks import HookError, Trace
from ..record import record
from ._target import Target, target as make_target

MAX_CHARS = 100_000        # each text: its logits are kept ([runs, chars, vocabulary] float32)
MAX_FREE = 10_000          # characters sampled after the patch
CHUNK = 4096               # steps per traced call (the loop's buffers grow with it)
TOP = 5


@dataclass(frozen=True)
class PatchConfig:
    """How a patch runs on after its last patched step."""

    free: int = 0                 # characters sampled after it; 0: the base is read on (forced)
    temperature: float = 1.0      # of the sampling; 0 takes the most likely character
    seed: int = 0                 # of the sampling's one uniform draw per step

    def __post_init__(self):
        if not (is_int(self.free) and 0 <= self.free <= MAX_FREE):
            raise UserError(f"free must be a whole number from 0 to {MAX_FREE:,}, got {self.free!r}", param="free")
        if not (isinstance(self.temperature, Real) and np.isfinite(self.temperature) and self.temperature >= 0):
            raise UserError(f"temperature must be a finite number >= 0, got {self.temperature!r}",
                            param="temperature")
        if not (is_int(self.seed) and 0 <= self.seed < 2 ** 63):
            raise UserError(f"seed must be a whole number >= 0, got {self.seed!r}", param="seed")


@dataclass
class PatchResult:
    """steps: position (in the base, or beyond it when sampling), char (read there), next (the character
    predicted: the base's, or the patched run's sample), p_clean, p_patched (of next), loss_clean,
    loss_patched (nats), kl (KL(clean || patched), nats), top_clean, top_patched (the 5 most likely)."""

    at: list
    source_at: list
    what: str
    size: int                       # units or latents replaced at each patched step
    steps: pd.DataFrame
    continuation: dict = field(default_factory=dict)     # free: {"clean": str, "patched": str}

    def summary(self) -> dict:
        s = self.steps.dropna(subset=["loss_clean"])
        out = {"what": self.what, "size": self.size, "at": self.at, "source_at": self.source_at,
               "mode": "free" if self.continuation else "forced", "steps": len(self.steps),
               "loss_clean": float(s["loss_clean"].mean()) if len(s) else None,
               "loss_patched": float(s["loss_patched"].mean()) if len(s) else None,
               "kl_mean": float(self.steps["kl"].mean()), "kl_max": float(self.steps["kl"].max()),
               "top1_changed": int((self.steps["top_clean"].str[0] != self.steps["top_patched"].str[0]).sum())}
        return {**out, **({"continuation": self.continuation} if self.continuation else {})}


def patch(model, base: str, source: str, at, what=None, *, source_at=None, dictionary=None, vocab=None,
          config: PatchConfig | None = None, **overrides) -> PatchResult:
    """Run `base` with `what` (see causes.target: None or "all", a quantity, unit ids, or latent ids of
    `dictionary`) replaced at steps `at` (base positions) by the source's state at `source_at` (default:
    the same positions); then read the base on, or sample (PatchConfig: free, temperature, seed).
    See the module docstring."""
    config = configured(PatchConfig, config, overrides)
    net, vocab = model_and_vocab(model, vocab)
    base_ids, source_ids = encode_text(vocab, base, "base"), encode_text(vocab, source, "source")
    at = _positions(at, len(base_ids), "at", "base")
    source_at = at if source_at is None else _positions(source_at, len(source_ids), "source_at", "source")
    if len(source_at) != len(at):
        raise UserError(f"source_at names {len(source_at)} steps and at {len(at)}: give one source step per "
                        "patched step", param="source_at")
    if any(t >= len(source_ids) for t in source_at):
        raise UserError(f"step {max(source_at)} is outside the source ({len(source_ids):,} characters, steps 0.."
                        f"{len(source_ids) - 1})", param="source_at")
    at, source_at = zip(*sorted(zip(at, source_at)))                 # in base order, each with its source step
    tgt = what if isinstance(what, Target) else make_target(what, net.config, dictionary)
    plan = dict(zip(at, source_plan(net, source_ids, tgt, source_at)))
    if config.free:
        steps, cont = _free(net, vocab, base_ids[:max(at) + 1], tgt, plan, config)
    else:
        steps, cont = _forced(net, vocab, base_ids, tgt, plan), {}
    return PatchResult(list(at), list(source_at), tgt.label, tgt.size, steps, cont)


def encode_text(vocab, text, param: str) -> np.ndarray:
    """ids of a text a causal analysis reads: non-empty, at most MAX_CHARS, every character in the vocabulary."""
    if not isinstance(text, str) or not text:
        raise UserError(f"{param} must be a non-empty text", param=param)
    if len(text) > MAX_CHARS:
        raise UserError(f"{param} has {len(text):,} characters; a causal analysis reads at most {MAX_CHARS:,}", param=param)
    unknown = sorted(set(text) - set(vocab.chars))
    if unknown:
        raise UserError(f"{param} holds {len(unknown)} character(s) this model's vocabulary lacks, e.g. "
                        f"{unknown[0]!r}: a text for another model?", param=param)
    return vocab.encode(text)


def _positions(at, n: int, param: str, text: str) -> list[int]:
    """Steps as given (one or a list), each checked to lie in a text of n characters, none twice."""
    steps = [at] if np.isscalar(at) else list(at)
    if not steps or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in steps):
        raise UserError(f"{param} must be one or more whole-number steps, got {at!r}", param=param)
    bad = [int(t) for t in steps if not 0 <= t < n]
    if bad:
        raise UserError(f"step {bad[0]} is outside the {text} ({n:,} characters, steps 0..{n - 1})", param=param)
    steps = [int(t) for t in steps]
    if len(set(steps)) != len(steps):
        raise UserError(f"{param} names a step twice", param=param)
    return steps


@torch.no_grad()
def source_plan(net, ids: np.ndarray, tgt: Target, positions) -> list[dict]:
    """What the source had at each position, in the target's terms: {quantity: values of its units [1, n]},
    and for latents {"latents": their activations [1, n]}; one exact recording (one stream)."""
    names = tgt.quantities()
    states = sorted({n.rsplit(".", 1)[-1] for n in names})
    rec = record(net, ids[:max(positions) + 1], states, streams=1, warmup=0)
    out = []
    for t in positions:
        row = {q: torch.from_numpy(rec[q][t][list(u)])[None] for q, u in tgt.units.items()}
        if tgt.latents:
            d = tgt.dictionary
            z = d.latents(torch.from_numpy(rec[d.quantity][t])[None])
            row["latents"] = z[:, list(tgt.latents)]
        out.append(row)
    return out


def patch_edits(tgt: Target, plan: dict, rows, offset: int = 0) -> dict:
    """hooks.Trace edits that, at step offset + t in plan, put the plan's values into the batch rows `rows`
    (a list of row indices; the plan's tensors have one row per entry)."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    edits = {}
    for q, units in tgt.units.items():
        idx = torch.as_tensor(units, dtype=torch.long)

        def put(value, t, q=q, idx=idx):
            got = plan.get(offset + t)
            if got is not None:
                value[rows[:, None], idx[None, :]] = got[q].to(value)
            return value
        edits[q] = put
    if tgt.latents:
        edits[tgt.dictionary.edit_point] = _latent_edit(tgt, plan, rows, offset)
    return edits


def _latent_edit(tgt: Target, plan: dict, rows, offset: int):
    d, idx = tgt.dictionary, torch.as_tensor(tgt.latents, dtype=torch.long)
    W = d.sae.W_dec.detach()[idx]                                            # [n, d_in]

    def move(value, t):
        got = plan.get(offset + t)
        if got is not None:
            now = d.sae.encode(value[rows].to(W))[:, idx]                    # the base's activations, here
            value[rows] += ((got["latents"].to(W) - now) @ W).to(value)
        return value
    return move


def run_traced(net, x: torch.Tensor, edits_at, edited: tuple[int, int], state=None, chunk: int = CHUNK):
    """Logits [B, T, V] (float32) of ids x [B, T] read in chunks with the state carried; returns (logits,
    state). Only the steps edited[0]..edited[1] run inside a Trace, with edits_at(offset) as each chunk's
    edits; the steps before and after run the model's own fused forward (edits there would do nothing)."""
    net.eval()
    first, last = edited
    bounds = sorted({0, first, last + 1, x.shape[1]})
    out = []
    try:
        for a, b in zip(bounds, bounds[1:]):
            for s in range(a, b, chunk):
                with Trace(net, names=[], edit=edits_at(s)) if a == first else nullcontext():
                    logits, state = net(x[:, s:min(s + chunk, b)], state)
                out.append(logits.float())
    except HookError as exc:
        raise UserError(str(exc)) from None
    return torch.cat(out, 1), state


@torch.no_grad()
def _forced(net, vocab, ids, tgt, plan) -> pd.DataFrame:
    x = torch.as_tensor(ids)[None].expand(2, -1)
    logits, _ = run_traced(net, x, lambda s: patch_edits(tgt, plan, [1], s), (min(plan), max(plan)))
    first = min(plan)
    nxt = np.append(ids[first + 1:], -1)
    return _table(vocab, logits[0, first:], logits[1, first:], ids[first:], nxt, first)


@torch.no_grad()
def _free(net, vocab, prefix, tgt, plan, config: PatchConfig):
    """Rows: 0 clean, sampling its own; 1 patched, sampling; 2 clean, reading row 1's characters."""
    x = torch.as_tensor(prefix)[None].expand(3, -1)
    logits, state = run_traced(net, x, lambda s: patch_edits(tgt, plan, [1], s), (min(plan), max(plan)))
    last = logits[:, -1]
    gen = torch.Generator().manual_seed(config.seed)
    read, pl, pc, chosen, clean = [int(prefix[-1])], [last[1]], [last[2]], [], []
    for _ in range(config.free):
        pick = _coupled(last[:2], config.temperature, gen)
        clean.append(pick[0])
        chosen.append(pick[1])
        inp = torch.tensor([[pick[0]], [pick[1]], [pick[1]]])
        logits, state = net(inp, state)
        last = logits[:, -1].float()
        read.append(pick[1])
        pl.append(last[1])
        pc.append(last[2])
    nxt = np.array(chosen + [-1])
    steps = _table(vocab, torch.stack(pc), torch.stack(pl), np.array(read), nxt, len(prefix) - 1)
    return steps, {"clean": vocab.decode(clean), "patched": vocab.decode(chosen)}


def _coupled(logits: torch.Tensor, temperature: float, gen) -> list[int]:
    """One character per row from one shared uniform (inverse CDF); the most likely at temperature 0."""
    if temperature == 0:
        return [int(i) for i in logits.argmax(-1)]
    p = torch.softmax(logits.double() / temperature, -1)
    u = torch.rand((), generator=gen, dtype=torch.float64)
    c = p.cumsum(-1)
    return [min(int(torch.searchsorted(c[r], u * c[r, -1])), p.shape[1] - 1) for r in range(len(p))]


def _table(vocab, clean: torch.Tensor, patched: torch.Tensor, read, nxt, start: int) -> pd.DataFrame:
    """One row per step from logits [T, V] of the two runs; nxt -1 where nothing follows."""
    lc, lp = torch.log_softmax(clean, -1), torch.log_softmax(patched, -1)
    kl = (lc.exp() * (lc - lp)).sum(-1).clamp_min(0).numpy()
    has = nxt >= 0
    take = torch.as_tensor(np.where(has, nxt, 0))[:, None]
    loss_c = np.where(has, -lc.gather(1, take)[:, 0].numpy(), np.nan)
    loss_p = np.where(has, -lp.gather(1, take)[:, 0].numpy(), np.nan)
    return pd.DataFrame({
        "position": np.arange(start, start + len(read)), "char": [vocab.chars[int(i)] for i in read],
        "next": [vocab.chars[int(i)] if i >= 0 else "" for i in nxt],
        "p_clean": np.exp(-loss_c), "p_patched": np.exp(-loss_p), "loss_clean": loss_c, "loss_patched": loss_p,
        "kl": kl, "top_clean": _top(vocab, lc), "top_patched": _top(vocab, lp)})


def _top(vocab, logp: torch.Tensor) -> list[str]:
    idx = logp.topk(min(TOP, logp.shape[-1]), -1).indices.numpy()
    return ["".join(vocab.chars[i] for i in row) for row in idx]
