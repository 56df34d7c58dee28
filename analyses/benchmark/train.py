"""Training throughput (chars/s) of neuroscope's Trainer.step vs a minimal hand-written nn.LSTM loop."""
from __future__ import annotations

import time

from analyses._paths import SHARED

from .timing import median


def plain_lstm_steps(vocab_size: int, streams, config, device):
    """The floor: a minimal hand-written char-LSTM training loop (embedding + nn.LSTM + linear, Adam,
    the same gradient clipping), over the same [B, L] streams. Returns a function running n steps."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab_size, config.hidden)
            self.lstm = nn.LSTM(config.hidden, config.hidden, config.layers, batch_first=True,
                                dropout=config.dropout if config.layers > 1 else 0.0)
            self.out = nn.Linear(config.hidden, vocab_size)

    torch.manual_seed(0)
    net = Plain().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, fused=device.type == "cuda")
    T = config.seq
    state = {"p": 0, "hc": None}

    def run(n: int) -> None:
        for _ in range(n):
            p = state["p"] if state["p"] + T + 1 <= streams.shape[1] else 0
            x, y = streams[:, p:p + T], streams[:, p + 1:p + T + 1]
            h, hc = net.lstm(net.emb(x), state["hc"])
            loss = F.cross_entropy(net.out(F.dropout(h, config.dropout)).reshape(-1, vocab_size), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip)
            opt.step()
            state["hc"], state["p"] = tuple(s.detach() for s in hc), p + T
    return run


def run(layers, hidden, batch, seq, dropout, steps, threads, device) -> dict:
    """Both loops over the same streams of warpeace's training split (the standard library's source
    without ../shared), alternated step by step; None sizes take the CPU or CUDA default."""
    import torch

    from neuroscope.model import CharRNN
    from neuroscope.text import Vocab, read_text, split_span
    from neuroscope.train import TrainConfig, Trainer, pick_device, stdlib_corpus

    torch.set_num_threads(threads)
    dev = pick_device(device)
    gpu = dev.type == "cuda"
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True          # as neuroscope.train does on a GPU
    config = TrainConfig(cell="lstm", layers=layers or (3 if gpu else 2), hidden=hidden or (512 if gpu else 256),
                         batch=batch or (128 if gpu else 32), seq=seq, dropout=dropout, device=dev.type)
    steps = steps or (200 if gpu else 30)
    path = SHARED / "data" / "warpeace.txt"
    text = read_text(path) if path.exists() else stdlib_corpus(3_000_000)
    vocab = Vocab.from_text(text)
    ids = torch.as_tensor(vocab.encode(text))
    a, b = split_span(len(text), "train")
    torch.manual_seed(0)
    trainer = Trainer(CharRNN(config.model_config(len(vocab))).to(dev), ids[a:b], config)

    def ours(n):
        for _ in range(n):
            trainer.step()

    plain = plain_lstm_steps(len(vocab), trainer.streams, config, dev)

    def timed(fn, wall: list, cpu: list):
        if gpu:
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        fn(1)
        if gpu:
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)

    ours(3), plain(3)                                          # warm-up: allocations, kernels, lazy imports
    t_ours, t_plain, c_ours, c_plain = [], [], [], []
    for _ in range(steps):                                     # alternate step by step: both see the same load
        timed(ours, t_ours, c_ours)
        timed(plain, t_plain, c_plain)
    chars = config.batch * config.seq                          # per step
    return {"device": torch.cuda.get_device_name(dev) if gpu else f"cpu ({threads} threads)",
            "model": f"LSTM {config.layers}x{config.hidden}", "batch": config.batch, "seq": config.seq,
            "dropout": dropout, "steps": steps,
            "neuroscope_chars_per_s": round(chars / median(t_ours)),
            "plain_chars_per_s": round(chars / median(t_plain)),
            "ratio": round(median(t_plain) / median(t_ours), 3),
            "ratio_of_totals": round(sum(t_plain) / sum(t_ours), 3),
            # CPU seconds of this process: less sensitive than wall time to other jobs on the machine.
            "ratio_cpu_time": round(sum(c_plain) / sum(c_ours), 3), "goal": 0.95}
