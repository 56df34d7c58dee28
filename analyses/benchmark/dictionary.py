"""Dictionaries: training throughput against torch's own peak on the same matrix shapes, and encoding
latents against recording the states they are computed from, in one run.

- training: `steps` optimiser steps of neuroscope's TopK autoencoder (losses, backward, the decoder's
  norm upkeep, Adam) on batches of the shown states, rows/s; beside it the same step's six dense
  products alone (the encoder's forward [B, d] x [d, n] and the decoder's [B, n] x [n, d], each with
  its two backward products), timed back to back, as the floor: the share of the step spent in them,
  and the rate in GFLOP/s of each;
- encoding: record.iter_states of the quantity over `chars` characters, then the same with the
  encoder applied (dictionary.iter_latents), the ratio of the two.
"""
from __future__ import annotations

import os
import time

from analyses._paths import SHARED

from .timing import load_average


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def run(ckpt, quantity, latents, k, batch, steps, chars, threads) -> dict:
    import torch

    from neuroscope.checkpoint import choose_text, load_checkpoint
    from neuroscope.dictionary import Dictionary, TopKSAE, iter_latents
    from neuroscope.dictionary._sae import losses
    from neuroscope.names import parse_quantity
    from neuroscope.record import iter_states

    torch.set_num_threads(threads)
    c = load_checkpoint(ckpt)
    text = choose_text(c, str(SHARED / "data" / "warpeace.txt"), "test").text[:chars]
    ids = c.vocab.encode(text)
    q = parse_quantity(quantity)
    states = torch.cat([torch.from_numpy(a[quantity]) for _, a in iter_states(c.model, ids, (q.state,), streams=64,
                                                                               warmup=256)])
    x_all = torch.tanh(states) if q.squash else states
    d_in = x_all.shape[1]
    sae = TopKSAE(d_in, latents, k, torch.Generator().manual_seed(0))
    sae.init_from_data(x_all)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    batches = [x_all[torch.randint(0, len(x_all), (batch,), generator=g)] for _ in range(steps)]

    def train_steps():
        for x in batches:
            out = losses(sae, x, None)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            sae.remove_parallel_gradient()
            opt.step()
            sae.normalise_decoder()
    train_steps()                                                    # warm-up: allocator, Adam's state
    t_train = _median_seconds(train_steps, 3)
    x, W, gy = batches[0], sae.W_enc.detach(), torch.randn(batch, latents)
    z, D, gx = torch.relu(torch.randn(batch, latents)), sae.W_dec.detach(), torch.randn(batch, d_in)
    products = {"forward x @ W_enc": lambda: x @ W, "grad W_enc = x^T g": lambda: x.t() @ gy,
                "grad x = g @ W_enc^T": lambda: gy @ W.t(), "forward z @ W_dec": lambda: z @ D,
                "grad W_dec = z^T g": lambda: z.t() @ gx, "grad z = g @ W_dec^T": lambda: gx @ D.t()}
    flop = 2 * batch * d_in * latents
    rates = {}
    for name, fn in products.items():
        fn()
        s = _median_seconds(lambda: [fn() for _ in range(steps)], 3) / steps
        rates[name] = {"ms": round(1000 * s, 3), "gflops": round(flop / s / 1e9, 1)}
    dense_s = sum(r["ms"] for r in rates.values()) / 1000 * steps
    d = Dictionary(sae, quantity, "bench")
    t_record = _median_seconds(lambda: [None for _ in iter_states(c.model, ids, (q.state,), streams=64, warmup=256)], 3)
    t_encode = _median_seconds(lambda: [None for _ in iter_latents(d, c.model, ids, streams=64, warmup=256)], 3)
    return {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "quantity": quantity,
            "latents": latents, "k": k, "batch": batch, "steps": steps, "train_s": round(t_train, 3),
            "rows_per_s": round(steps * batch / t_train), "dense_products_s": round(dense_s, 3),
            "dense_share_of_step": round(dense_s / t_train, 3), "products": rates, "chars": len(ids),
            "record_s": round(t_record, 2), "record_and_encode_s": round(t_encode, 2),
            "encode_ratio": round(t_encode / t_record, 3), "load_average": load_average()}
