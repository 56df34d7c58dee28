"""Record per-character states of a CharRNN over a long text, chunk by chunk.

    >>> for start, acts in iter_states(model, ids, states=("h", "c")):
    ...     acts["rnn.l0.c"]       # float32 numpy [n, H]: states after reading ids[start:start+n]

Contract (the rest of neuroscope relies on it):
- names are "rnn.l{layer}.{state}", state in h, c (LSTM only), gate_i/f/g/o (LSTM), gate_r/z/n (GRU);
- row k of a chunk is the state after reading character start+k, starting from a zero state at ids[0];
- chunks cover ids in order, without gaps or overlap; state is carried across chunks.

FIRST VERSION: a plain per-step loop (slow, exact). The hook system (issue 3) replaces it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES = ("r", "z", "n")


@dataclass(frozen=True)
class Intervention:
    """Edit units of one recorded quantity inside the recurrence: "zero", "clamp" to value, or "scale" by value.

    name: e.g. "rnn.l1.c" (h or c); units: unit indices; positions: None (every step), or indices /
    a slice of ids (the edit applies to the state after reading those characters).
    """
    name: str
    units: Sequence[int]
    op: str = "zero"
    value: float = 0.0
    positions: object = None

    def apply(self, v: torch.Tensor, t: int) -> torch.Tensor:
        if self.positions is not None:
            pos = self.positions
            hit = (pos.start or 0) <= t < (pos.stop if pos.stop is not None else t + 1) if isinstance(pos, slice) \
                else t in set(np.asarray(pos).ravel().tolist())
            if not hit:
                return v
        u = list(self.units)
        v = v.clone()
        if self.op == "zero":
            v[..., u] = 0.0
        elif self.op == "clamp":
            v[..., u] = self.value
        else:
            v[..., u] = v[..., u] * self.value
        return v


def state_names(config, states: Iterable[str] = ("h", "c")) -> list[str]:
    """All quantity names for a model config, e.g. ["rnn.l0.h", "rnn.l0.c", ...]."""
    out = []
    for layer in range(config.num_layers):
        for s in states:
            if s == "c" and config.cell != "lstm":
                continue
            if s == "gates":
                gates = LSTM_GATES if config.cell == "lstm" else GRU_GATES if config.cell == "gru" else ()
                out += [f"rnn.l{layer}.gate_{g}" for g in gates]
            else:
                out.append(f"rnn.l{layer}.{s}")
    return out


@torch.no_grad()
def iter_states(model, ids: np.ndarray, states: Iterable[str] = ("h", "c"), chunk: int = 4096,
                progress: bool = False, streams: int = 1, warmup: int = 0,
                interventions: Sequence[Intervention] | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    states = tuple(states)
    cfg = model.config
    wanted = set(state_names(cfg, states))
    rnn = model.rnn
    x_all = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    H, L = cfg.hidden_size, cfg.num_layers
    h = [torch.zeros(1, H) for _ in range(L)]
    c = [torch.zeros(1, H) for _ in range(L)]
    if streams != 1 or warmup:
        raise NotImplementedError("streams/warmup arrive with the fast recorder (issue 3)")
    edits: dict[str, list] = {}
    for iv in interventions or ():
        edits.setdefault(iv.name, []).append(iv)
    bar = tqdm(total=len(ids), unit="char", unit_scale=True, disable=not progress, desc="record")
    for start in range(0, len(ids), chunk):
        x = model.encoder(x_all[start:start + chunk])          # [T, E]
        T = x.shape[0]
        out: dict[str, np.ndarray] = {}
        for layer in range(L):
            w_ih = getattr(rnn, f"weight_ih_l{layer}")
            w_hh = getattr(rnn, f"weight_hh_l{layer}")
            b_ih = getattr(rnn, f"bias_ih_l{layer}")
            b_hh = getattr(rnn, f"bias_hh_l{layer}")
            xp = x @ w_ih.T + b_ih                             # [T, G*H]
            hs = torch.empty(T, H)
            cs = torch.empty(T, H) if cfg.cell == "lstm" else None
            gates_rec = {g: torch.empty(T, H) for g in (LSTM_GATES if cfg.cell == "lstm" else GRU_GATES)}
            hl, cl = h[layer], c[layer]
            for t in range(T):
                hh = hl @ w_hh.T + b_hh                        # [1, G*H]
                if cfg.cell == "lstm":
                    gi, gf, gg, go = (xp[t] + hh[0]).chunk(4)
                    gi, gf, gg, go = gi.sigmoid(), gf.sigmoid(), gg.tanh(), go.sigmoid()
                    cl = gf * cl + gi * gg
                    for iv in edits.get(f"rnn.l{layer}.c", ()):
                        cl = iv.apply(cl, start + t)
                    hl = go * cl.tanh()
                    cs[t] = cl
                    for name, v in zip(LSTM_GATES, (gi, gf, gg, go)):
                        gates_rec[name][t] = v
                elif cfg.cell == "gru":
                    xr, xz, xn = xp[t].chunk(3)
                    hr, hz, hn = hh[0].chunk(3)
                    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
                    n = (xn + r * hn).tanh()
                    hl = (1 - z) * n + z * hl
                    for name, v in zip(GRU_GATES, (r, z, n)):
                        gates_rec[name][t] = v
                else:
                    hl = (xp[t] + hh[0]).tanh()
                hl = hl.reshape(1, H)
                for iv in edits.get(f"rnn.l{layer}.h", ()):
                    hl = iv.apply(hl, start + t)
                hs[t] = hl[0]
            h[layer], c[layer] = hl, cl
            x = hs
            for name, v in [("h", hs), ("c", cs)] + [(f"gate_{g}", v) for g, v in gates_rec.items()]:
                key = f"rnn.l{layer}.{name}"
                if key in wanted:
                    out[key] = v.numpy().copy()
        bar.update(T)
        yield start, out
    bar.close()


@torch.no_grad()
def char_losses(model, ids: np.ndarray, interventions: Sequence[Intervention] | None = None, chunk: int = 4096,
                progress: bool = False) -> np.ndarray:
    """Nats spent predicting ids[k+1] after reading ids[:k+1], float32 [len(ids)-1], interventions applied.

    FIRST VERSION (slow loop); same contract as the fast one that replaces it.
    """
    ids = np.asarray(ids)
    tgt = torch.as_tensor(ids[1:], dtype=torch.long)
    out = np.empty(len(ids) - 1, dtype=np.float32)
    last = model.config.num_layers - 1
    for start, acts in iter_states(model, ids, states=("h",), chunk=chunk, progress=progress,
                                   interventions=interventions):
        h = torch.from_numpy(acts[f"rnn.l{last}.h"])
        n = min(len(h), len(ids) - 1 - start)
        if n <= 0:
            continue
        logits = model.decoder(h[:n])
        out[start:start + n] = torch.nn.functional.cross_entropy(logits, tgt[start:start + n], reduction="none").numpy()
    return out
