"""Every cell at one parameter count: its training throughput against nn.LSTM's (the same Trainer.step, the
same streams, steps alternated so that both see the same load), and the cost of recording all its states
against its own forward (no gradients, one stream) over the same characters."""
from __future__ import annotations

import time

from analyses._paths import SHARED

from .timing import load_average, median

CELLS = ("lstm", "gru", "rnn", "mingru", "minlstm", "slstm", "mlstm", "ssm")


def run(parameters, layers, batch, seq, steps, chars, threads, cells) -> dict:
    import torch

    from neuroscope.model import CharRNN, ModelConfig, count_parameters, hidden_for_parameters, iter_logits
    from neuroscope.record import record
    from neuroscope.text import Vocab, read_text, split_span
    from neuroscope.train import TrainConfig, Trainer, stdlib_corpus

    torch.set_num_threads(threads)
    path = SHARED / "data" / "warpeace.txt"
    text = read_text(path) if path.exists() else stdlib_corpus(3_000_000)
    vocab = Vocab.from_text(text)
    ids = torch.as_tensor(vocab.encode(text))
    a, b = split_span(len(text), "train")
    test = ids[b:b + chars]

    def trainer(cell):
        hidden = hidden_for_parameters(ModelConfig(vocab_size=len(vocab), cell=cell, num_layers=layers), parameters)
        config = TrainConfig(cell=cell, layers=layers, hidden=hidden, batch=batch, seq=seq, device="cpu")
        torch.manual_seed(0)
        return Trainer(CharRNN(config.model_config(len(vocab))), ids[a:b], config)

    def step_time(t):
        t0 = time.perf_counter()
        t.step()
        return time.perf_counter() - t0

    lstm, rows = trainer("lstm"), []
    for cell in cells:
        t = trainer(cell)
        step_time(t), step_time(lstm)                                  # warm-up
        own, ref = [], []
        for _ in range(steps):                                         # alternated: the same load for both
            own.append(step_time(t))
            ref.append(step_time(lstm))
        net = t.model.eval()
        x = test[None]

        def forward():
            for _ in iter_logits(net, x):
                pass

        def recording():
            record(net, test.numpy(), states=("h", "c", "norm", "stab", "gates"))

        fwd, rec = [], []
        for _ in range(3):
            for fn, out in ((forward, fwd), (recording, rec)):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        rows.append({"cell": cell, "hidden": t.model.config.hidden_size, "parameters": count_parameters(t.model),
                     "train_chars_per_s": round(batch * seq / median(own)),
                     "lstm_chars_per_s": round(batch * seq / median(ref)),
                     "train_ratio_to_lstm": round(median(ref) / median(own), 3),
                     "forward_s": round(median(fwd), 3), "record_s": round(median(rec), 3),
                     "record_ratio": round(median(rec) / median(fwd), 3)})
    return {"parameters": parameters, "layers": layers, "batch": batch, "seq": seq, "steps": steps, "chars": chars,
            "device": f"cpu ({threads} threads)", "rows": rows, "load_average": [round(v, 2) for v in load_average()]}
