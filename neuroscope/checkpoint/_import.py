"""Char-RNNs trained elsewhere, brought in as `plain-char-rnn/1` checkpoints, each checked for parity: the
converted model's next-character logits against the source's own forward on a text.

    >>> imported = import_model("charlstm.pth", vocab="vocab.json")    # a PyTorch state_dict
    >>> imported = import_model("shakespeare.keras")                    # a Keras 3 model (see _keras)
    >>> imported.parity, imported.mapping                               # max |difference|, our name -> theirs
    >>> save_checkpoint("model.pt", imported.ckpt)

A PyTorch file is read with torch.load(weights_only=True) (nothing pickled runs) and must hold a state_dict
(or a dict with one under "state_dict" or "model") of a module with an embedding (or one-hot input: the
first layer reads the vocabulary directly), one nn.LSTM, nn.GRU or nn.RNN (tanh) and a linear decoder.
Roles are found by name and shape: the recurrent weights by PyTorch's names (`*weight_ih_l0`, ...), the
embedding a [V, E] matrix with no bias beside it, the decoder a [V, H] matrix with a [V] bias. Where two
tensors could fill a role, `mapping` names them ({"encoder": key, "decoder": prefix}).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import MAX_LAYERS, MAX_UNITS
from ..errors import UserError
from ..model import CharRNN, ModelConfig
from ..text import Vocab, read_bytes, regular_file_size
from ._file import (MAX_CHECKPOINT_BYTES, Checkpoint, check_unpacked_size, checked_tensor, checked_vocab,
                    load_failure)

PARITY = 1e-5                      # the largest |logit difference| an import may show
PARITY_TEXT = ("The model reads this text to check the conversion: \"Well, Prince, so Genoa and Lucca are now "
               "just family estates.\" int main(void) { return 0; } [[link]] http://example.org/\n")
GATES = {4: "lstm", 3: "gru", 1: "rnn"}
MAX_VOCAB_BYTES = 10 * 1024 ** 2


@dataclass
class Imported:
    """An import: the checkpoint, its parity with the source's own forward, and where each weight came from."""

    ckpt: Checkpoint
    parity: float                  # max |logit difference| on the parity text (probabilities for softmax models)
    compared: str                  # what was compared: "logits" or "probabilities"
    source: str                    # "pytorch state_dict" or "keras"
    mapping: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "parity": self.parity, "compared": self.compared, "mapping": self.mapping,
                "config": self.ckpt.config.to_dict(), "vocab_size": len(self.ckpt.vocab)}


def import_model(path: str | os.PathLike, vocab=None, mapping: dict | None = None, text: str | None = None) -> Imported:
    """A checkpoint from a model file of another tool, checked for parity on `text` (or a built-in one).

    vocab: a Vocab, a list of characters in index order, a {character: index} dict, or the path of a JSON
    file holding either (needed where the source has none). mapping: see the module docstring.
    Raises UserError (one line) for a file that is not such a model, a vocabulary that does not fit it, or
    a conversion that misses parity.
    """
    path = os.fspath(path)
    size = regular_file_size(path, "model file", MAX_CHECKPOINT_BYTES, UserError)
    from . import _keras
    if _keras.is_keras(path):
        return _keras.import_keras(path, vocab, text, size)
    check_unpacked_size(path, size)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - as load_checkpoint: arbitrary bytes fail in arbitrary ways
        runs_code, detail = load_failure(exc)
        reason = f"loading it would run {detail}" if runs_code else detail
        raise UserError(f"{path} is not a PyTorch state_dict that loads without running code ({reason[:200]})") from None
    if isinstance(blob, dict) and blob.get("format") == "plain-char-rnn/1":
        raise UserError(f"{path} is a neuroscope checkpoint already: use it as it is")
    state = _state_dict(blob, path)
    return import_state_dict(state, vocab_of(vocab, blob), mapping or {}, text)


def import_state_dict(state: dict, vocab: Vocab | None, mapping: dict, text: str | None = None) -> Imported:
    """Our checkpoint from a module's state_dict (see the module docstring), checked for parity."""
    parts = _roles(state, mapping)
    V = parts["V"]
    if vocab is None:
        raise UserError(f"this state_dict holds no vocabulary: give vocab, the {V} characters in index order",
                        param="vocab")
    if len(vocab) != V:
        raise UserError(f"the vocabulary has {len(vocab)} characters; the model reads and predicts {V}", param="vocab")
    cfg = ModelConfig(vocab_size=V, cell=parts["cell"], embedding_dim=parts["E"], hidden_size=parts["H"],
                      num_layers=parts["L"])
    ours = {"encoder.weight": parts["encoder"], "decoder.weight": state[parts["decoder"] + "weight"],
            "decoder.bias": state[parts["decoder"] + "bias"]}
    names = {"encoder.weight": parts["encoder_key"], "decoder.weight": parts["decoder"] + "weight",
             "decoder.bias": parts["decoder"] + "bias"}
    for k in range(cfg.num_layers):
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            key = f"{parts['rnn']}{w}_l{k}"
            rows = parts["G"] * cfg.hidden_size
            ours[f"rnn.{w}_l{k}"] = state[key] if key in state else torch.zeros(rows)      # bias=False: zeros
            names[f"rnn.{w}_l{k}"] = key if key in state else "(no bias: zeros)"
    model = CharRNN(cfg)
    model.load_state_dict({k: v.float() for k, v in ours.items()})
    model.eval()
    ckpt = Checkpoint(model=model, vocab=vocab, train={"text": "imported"},
                      extra={"imported": {"source": "pytorch state_dict", "mapping": names}})
    reference = _reference(state, parts, cfg)
    ids = torch.as_tensor(vocab.encode(text or PARITY_TEXT))[None]
    with torch.no_grad():
        gap = float((model(ids)[0] - reference(ids)).abs().max())
    check_parity(gap, "logits")
    return Imported(ckpt, gap, "logits", "pytorch state_dict", names)


def check_parity(gap: float, what: str) -> None:
    if not gap <= PARITY:
        raise UserError(f"the converted model's {what} differ from the source's by {gap:.3g} (more than {PARITY:g}): "
                        "the conversion is wrong for this model, so nothing was written")


def vocab_of(vocab, blob=None) -> Vocab | None:
    """A Vocab from what the user gave (a Vocab, list, dict or JSON file), else from the file's own
    "vocab"/"chars"/"itos" entry, else None."""
    if isinstance(vocab, Vocab):
        return vocab
    if isinstance(vocab, (str, os.PathLike)):
        try:
            vocab = json.loads(read_bytes(vocab, "vocabulary", MAX_VOCAB_BYTES).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{vocab} is not a JSON vocabulary ({str(exc).splitlines()[0]})", param="vocab") from None
    if vocab is None and isinstance(blob, dict):
        vocab = next((blob[k] for k in ("vocab", "chars", "itos", "stoi") if k in blob), None)
    if vocab is None:
        return None
    if isinstance(vocab, dict):
        idx = sorted(vocab.values()) if all(isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()) else None
        if idx != list(range(len(vocab))):
            raise UserError("a vocabulary given as {character: index} needs the indices 0..V-1, each once",
                            param="vocab")
        vocab = sorted(vocab, key=vocab.get)
    try:
        return checked_vocab(list(vocab) if isinstance(vocab, (list, tuple, str)) else vocab)
    except UserError as exc:
        raise UserError(f"bad vocabulary: {exc}", param="vocab") from None


def _state_dict(blob, path: str) -> dict:
    for key in ("state_dict", "model"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
            break
    if not isinstance(blob, dict) or not blob or not all(isinstance(k, str) for k in blob):
        raise UserError(f"{path} holds no state_dict (a dict of tensors by name)")
    state = {k: v for k, v in blob.items() if torch.is_tensor(v)}
    if not state:
        raise UserError(f"{path} holds no tensors")
    return {k: checked_tensor(repr(k), v) for k, v in state.items()}


def _roles(state: dict, mapping: dict) -> dict:
    """Which tensors are the recurrent layers, the embedding and the decoder, with the sizes they imply."""
    prefixes = sorted({m.group(1) for k in state if (m := re.fullmatch(r"(.*)weight_ih_l0", k))})
    if "rnn" in mapping:
        prefixes = [mapping["rnn"]] if f"{mapping['rnn']}weight_ih_l0" in state else []
    if len(prefixes) != 1:
        found = ", ".join(p or "(top level)" for p in prefixes) or "none"
        raise UserError(f"a char-RNN state_dict holds one nn.LSTM/GRU/RNN (keys ending in weight_ih_l0); found {found}"
                        + ("; name it with mapping rnn=PREFIX" if prefixes else ""), param="mapping")
    rnn = prefixes[0]
    if any(k.startswith(rnn) and ("_reverse" in k or "weight_hr" in k) for k in state):
        raise UserError("a bidirectional RNN or an LSTM with proj_size cannot be read as a char-RNN", param="mapping")
    hh = state[f"{rnn}weight_hh_l0"]
    H, ih = hh.shape[1], state[f"{rnn}weight_ih_l0"]
    G = hh.shape[0] // H if hh.dim() == 2 and H else 0
    if G not in GATES or hh.shape[0] != G * H or not 1 <= H <= MAX_UNITS:
        raise UserError(f"{rnn}weight_hh_l0 has shape {list(hh.shape)}, which is no LSTM, GRU or RNN layer")
    L = 1 + max(int(m.group(1)) for k in state if (m := re.fullmatch(re.escape(rnn) + r"weight_ih_l(\d+)", k)))
    if L > MAX_LAYERS:
        raise UserError(f"{L} layers; at most {MAX_LAYERS}")
    for k in range(L):
        for w, shape in (("weight_ih", (G * H, ih.shape[1] if k == 0 else H)), ("weight_hh", (G * H, H)),
                         ("bias_ih", (G * H,)), ("bias_hh", (G * H,))):
            key = f"{rnn}{w}_l{k}"
            if (key in state or w.startswith("weight")) and tuple(state.get(key, torch.empty(0)).shape) != shape:
                raise UserError(f"{key} should have shape {list(shape)} for layer {k} of this RNN")
    decoder = mapping.get("decoder") or _decoder(state, rnn, H)
    if f"{decoder}weight" not in state or f"{decoder}bias" not in state or state[f"{decoder}weight"].shape[1:] != (H,):
        raise UserError(f"no decoder {decoder}weight [V, {H}] with {decoder}bias [V]", param="mapping")
    V = state[f"{decoder}weight"].shape[0]
    E = ih.shape[1]
    encoder_key = mapping.get("encoder") or _encoder(state, rnn, decoder, V, E)
    if encoder_key is None:                   # one-hot input: the first layer reads the vocabulary itself
        if E != V:
            raise UserError(f"no embedding [{V}, {E}] found, and the first layer reads {E} inputs, not the {V} "
                            "characters one-hot: name the embedding with mapping encoder=KEY", param="mapping")
        encoder = torch.eye(V)
    else:
        encoder = state.get(encoder_key)
        if encoder is None or tuple(encoder.shape) != (V, E):
            raise UserError(f"the embedding {encoder_key} should have shape [{V}, {E}]", param="mapping")
    return {"rnn": rnn, "G": G, "cell": GATES[G], "H": H, "L": L, "V": V, "E": E, "decoder": decoder,
            "encoder": encoder, "encoder_key": encoder_key or "(one-hot: identity)"}


def _decoder(state: dict, rnn: str, H: int) -> str:
    found = [k[:-len("weight")] for k, v in state.items() if k.endswith("weight") and not k.startswith(rnn)
             and v.dim() == 2 and v.shape[1] == H and tuple(state.get(k[:-len("weight")] + "bias",
                                                                       torch.empty(0)).shape) == (v.shape[0],)]
    if len(found) != 1:
        raise UserError(f"{'no' if not found else 'more than one'} decoder ([V, {H}] weight with a [V] bias)"
                        f"{': ' + ', '.join(found) if found else ''}; name it with mapping decoder=PREFIX",
                        param="mapping")
    return found[0]


def _encoder(state: dict, rnn: str, decoder: str, V: int, E: int) -> str | None:
    found = [k for k, v in state.items() if not k.startswith(rnn) and not k.startswith(decoder) and v.dim() == 2
             and tuple(v.shape) == (V, E) and not any(o.startswith(k.rsplit(".", 1)[0] + ".bias") for o in state)]
    if len(found) > 1:
        raise UserError(f"more than one embedding [{V}, {E}]: {', '.join(found)}; name it with mapping encoder=KEY",
                        param="mapping")
    return found[0] if found else None


def _reference(state: dict, parts: dict, cfg: ModelConfig):
    """The source's own forward: PyTorch's modules given the source's tensors under the source's names."""
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cfg.cell]
    bias = f"{parts['rnn']}bias_ih_l0" in state
    rnn = cls(cfg.embedding_dim, cfg.hidden_size, cfg.num_layers, bias=bias, batch_first=True)
    rnn.load_state_dict({k[len(parts["rnn"]):]: v.float() for k, v in state.items() if k.startswith(parts["rnn"])
                         and re.fullmatch(r"(weight|bias)_(ih|hh)_l\d+", k[len(parts["rnn"]):])})
    decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size)
    decoder.load_state_dict({"weight": state[parts["decoder"] + "weight"].float(),
                             "bias": state[parts["decoder"] + "bias"].float()})
    table = parts["encoder"].float()

    def forward(ids):
        x = table[ids] if parts["encoder_key"] != "(one-hot: identity)" else nn.functional.one_hot(ids, cfg.vocab_size).float()
        return decoder(rnn.eval()(x)[0])
    return torch.no_grad()(forward)


__all__ = ["Imported", "PARITY", "check_parity", "import_model", "import_state_dict", "vocab_of"]
