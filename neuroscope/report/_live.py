"""The live report: the model's weights inside the page, and a forward pass in plain JavaScript.

    >>> check_live(model)                        # UserError (one line) if the page cannot run it
    >>> payload = live_payload(ckpt)             # what the page's script reads: weights, sizes, vocabulary
    >>> payload["tensors"][0]                    # {"name": "encoder.weight", "shape": [84, 128], "offset": 0}
    >>> LIVE_JS                                  # the page's forward pass and live section (neuroscope/report/live.js)

Every weight travels as float16: the raw little-endian bytes of all state_dict tensors, one after
the other, base64-encoded (4 characters per 3 bytes); the page decodes them to float32 once. The
page computes in float32 storage (states rounded to float32 after every step, as torch keeps
them), so it reproduces neuroscope.record on the float16-rounded model (`rounded_model`) to about
1e-6; for the reference checkpoints, stored as float16, that model is the checkpoint itself.
A float32 model is rounded first, and the page says by how much its weights moved.

Supported: neuroscope's CharRNN (nn.Embedding -> nn.LSTM / nn.GRU / nn.RNN (tanh or ReLU) ->
nn.Linear), one direction, no LSTM projection, at most MAX_LIVE_WEIGHTS weights unless forced.
"""
from __future__ import annotations

import base64
from html import escape
import copy
from importlib import resources

import torch
from torch import nn

from ..errors import UserError
from ..model import count_parameters
from ..names import Unit

# A 3 x 512 LSTM has 6.4M weights (13 MB as float16, 17 MB in base64) and steps in a few ms per
# character in Chromium; past about 8M a page gets slow to open and to scroll, so bigger needs force.
MAX_LIVE_WEIGHTS = 8_000_000
MAX_LIVE_CHARS = 10_000      # characters the text box reads: every character's state is kept in memory
START_CHARS = 300            # characters of the report's excerpt the text box opens with
BIG_WEIGHTS = 2_000_000      # above this the page warns that typing and interventions are slower
FLOAT16_MAX = 65504.0
CELLS = {nn.LSTM: "lstm", nn.GRU: "gru", nn.RNN: "rnn"}


def _js() -> str:
    return resources.files(__package__).joinpath("live.js").read_text(encoding="utf-8")


LIVE_JS = _js()


def cannot_run(model) -> str | None:
    """What the page says in place of the live view for a cell its script does not run (neuroscope.cells'
    cells), or None."""
    cell = getattr(getattr(model, "config", None), "cell", None)
    if cell in CELLS.values() or cell is None or not hasattr(getattr(model, "rnn", None), "run_layer"):
        return None
    return (f"This page cannot run the model: its live script runs LSTM, GRU and RNN cells, and this model's cell is "
            f"{cell}. Every other section was computed by PyTorch and holds for it.")


def check_live(model, force: bool = False) -> None:
    """Refuse, with one line, a model the page cannot run: another layout or cell, or (unless force)
    more than MAX_LIVE_WEIGHTS weights. Cheap: reads the module types and sizes only."""
    rnn, cfg = getattr(model, "rnn", None), getattr(model, "config", None)
    if cfg is None or not isinstance(getattr(model, "encoder", None), nn.Embedding) \
            or not isinstance(getattr(model, "decoder", None), nn.Linear):
        raise UserError(f"a live page runs neuroscope's CharRNN (embedding, RNN, linear), not {type(model).__name__}",
                        param="live")
    if cannot_run(model):
        return                                  # the page says so (live_payload); the report is built
    if type(rnn) not in CELLS or CELLS[type(rnn)] != cfg.cell:
        raise UserError(f"a live page runs LSTM, GRU and RNN cells, not {type(rnn).__name__}", param="live")
    cell = ("a " if cfg.cell == "gru" else "an ") + cfg.cell.upper()
    what = (f"a bidirectional {cell[cell.index(' ') + 1:]}" if rnn.bidirectional else f"{cell} with proj_size"
            if getattr(rnn, "proj_size", 0) else f"{cell} without biases" if not rnn.bias else None)
    if what:
        raise UserError(f"a live page cannot run {what}", param="live")       # e.g. "a bidirectional LSTM"
    n = count_parameters(model)
    if n > MAX_LIVE_WEIGHTS and not force:
        raise UserError(f"this model has {n:,} weights ({2 * n:,} bytes as float16), more than a live page "
                        f"carries ({MAX_LIVE_WEIGHTS:,}); pass live_force to build it anyway", param="live_force")
    big = max(float(p.detach().abs().max()) for p in model.parameters())
    if not big <= FLOAT16_MAX:
        raise UserError(f"a weight of {big:g} does not fit in float16 (largest {FLOAT16_MAX:g}), so the page "
                        "cannot carry this model", param="live")


def encode_weights(model) -> tuple[list[dict], str, float]:
    """(tensors [{"name", "shape", "offset" (in weights)}], base64 of all weights as float16 bytes in
    state_dict order, the largest change that rounding to float16 made)."""
    tensors, parts, offset, moved = [], [], 0, 0.0
    for name, t in model.state_dict().items():
        w = t.detach().float().cpu()
        half = w.half()
        moved = max(moved, float((half.float() - w).abs().max())) if w.numel() else moved
        parts.append(half.numpy().astype("<f2").tobytes())
        tensors.append({"name": name, "shape": list(t.shape), "offset": offset})
        offset += w.numel()
    return tensors, base64.b64encode(b"".join(parts)).decode("ascii"), moved


def rounded_model(model):
    """A copy of model with every weight rounded to float16 (kept in float32): the model the page runs."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(p.half().float())
    return out


def live_payload(ckpt, force: bool = False) -> dict:
    """What the page's live script reads (JSON-ready): the cell, sizes, vocabulary, fallback id and
    the weights (see encode_weights); raises UserError as check_live."""
    model, cfg = ckpt.model, ckpt.config
    check_live(model, force)
    if cannot_run(model):
        return {"cannot_run": cannot_run(model)}
    tensors, weights, moved = encode_weights(model)
    return {"cell": cfg.cell, "relu": getattr(model.rnn, "nonlinearity", "tanh") == "relu",
            "layers": cfg.num_layers, "hidden": cfg.hidden_size, "embedding": cfg.embedding_dim,
            "vocab_size": len(ckpt.vocab), "vocab": list(ckpt.vocab.chars), "fallback": int(ckpt.vocab.fallback_id),
            "tensors": tensors, "weights": weights, "rounded": moved, "parameters": count_parameters(model),
            "max_chars": MAX_LIVE_CHARS, "start_chars": START_CHARS}


def live_notes(payload: dict) -> list[str]:
    """What the live section says about itself: size, precision, vocabulary, limits."""
    n, size = payload["parameters"], len(payload["weights"])
    fallback = payload["vocab"][payload["fallback"]]
    notes = [f"The model runs inside this page, offline: type or paste text and it reads it one character at a "
             f"time, carrying its state; the views below follow. Its {n:,} weights add {size / 1e6:.2f} MB "
             "to this file (float16, base64).",
             "Characters outside the model's vocabulary are read as " + repr(fallback) +
             ", as neuroscope's command line reads them; the line under the box counts them.",
             f"The box reads at most {MAX_LIVE_CHARS:,} characters."]
    if "\r" in payload["vocab"]:
        notes[-1] += (" A text box keeps line breaks as \"\\n\" only (browsers drop the \"\\r\" of \"\\r\\n\"); "
                      "the box beside the picker reads each one as \"\\r\\n\" for a model whose corpus writes them so.")
    if payload["rounded"] > 0:
        notes.append(f"The page's weights are the checkpoint's rounded to float16 (the largest change is "
                     f"{payload['rounded']:.2g}), so its numbers can differ slightly from the sections above, "
                     "which use the checkpoint's float32 weights.")
    else:
        notes.append("The checkpoint's weights are float16 already, so the page runs exactly this model, in float32.")
    if n > BIG_WEIGHTS:
        notes.append(f"This is a large model for a page ({size / 1e6:.0f} MB of weights): each typed character takes "
                     "a few milliseconds, and a change of intervention reads the whole text again (seconds for "
                     "thousands of characters).")
    return notes


def live_section(payload: dict, panels: list[dict], text: str) -> tuple[dict, dict]:
    """The live section: a text box, a unit picker (the report's units of h and c), interventions,
    sampling. The page's live script draws it from the payload; it runs the model, not a dictionary, so
    when the panels show latents it offers units and a first note says why. text: the report's excerpt; when the
    vocabulary has "\r", a box "read line breaks as \r\n" is offered, ticked if the excerpt writes them so."""
    if "cannot_run" in payload:
        return {"id": "live", "title": "Live: type, watch a unit, intervene", "kind": "html",
                "html": f"<p class=\"note\">{escape(payload['cannot_run'])}</p>", "notes": []}, {}
    shown = [u for p in panels for u in p["units"]]
    units = list(dict.fromkeys(u for u in shown if isinstance(u, Unit) and u.state in ("h", "c")))
    label = {u: f"{u.id}   ({p['feature']})" if p["feature"] else u.id for p in reversed(panels) for u in p["units"]}
    options = [{"id": u.id, "label": label[u]} for u in units]
    if not options:
        options = [{"id": "l0.h.0", "label": "l0.h.0"}]
    crlf = ("\r\n" in text) if "\r" in payload["vocab"] else None
    notes = live_notes(payload)
    if any(not isinstance(u, Unit) for u in shown):
        notes.insert(0, "The page runs the model only, not the dictionary: it colours by units of h and c, never "
                        "by the latents shown above.")
    return {"id": "live", "title": "Live: type, watch a unit, intervene", "kind": "live", "options": options,
            "crlf": crlf, "notes": notes}, {}


__all__ = ["LIVE_JS", "MAX_LIVE_WEIGHTS", "cannot_run", "check_live", "encode_weights", "live_payload", "live_section",
           "rounded_model"]
