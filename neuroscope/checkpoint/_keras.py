"""A Keras 3 `.keras` char-RNN (Embedding, LSTM, GRU or SimpleRNN layers, Dense), brought in.

The file is read without Keras: its config.json is plain JSON, checked layer by layer (a Lambda layer, or
any layer not listed here, is refused in one line, so nothing in the file runs), and its weights are read
from model.weights.h5 with h5py after their shapes are checked against the config. Keras' LSTM gates come
in PyTorch's order (i, f, c, o = i, f, g, o); its GRU's (z, r, h) are reordered to r, z, n; a GRU with
reset_after=False applies r before the recurrent product, which PyTorch's GRU cannot, so it is refused.
Parity is checked against Keras' own predict (Keras 3 on its torch backend: no TensorFlow), loaded with
safe_mode after the checks above.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import torch

from ..config import MAX_LAYERS, MAX_UNITS
from ..errors import UserError
from ..model import CharRNN, ModelConfig
from ._file import Checkpoint

RNN_LAYERS = {"LSTM": ("lstm", 4), "GRU": ("gru", 3), "SimpleRNN": ("rnn", 1)}
SKIPPED = {"InputLayer", "Dropout"}              # no weights, nothing at inference
# The weights file names a layer by its class, snake-cased, numbered from the second of a class on
# (lstm, lstm_1, ...), not by the name in config.json.
H5_NAMES = {"Embedding": "embedding", "Dense": "dense", "LSTM": "lstm", "GRU": "gru", "SimpleRNN": "simple_rnn"}
MAX_CONFIG_BYTES = 10 * 1024 ** 2


def is_keras(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return {"config.json", "model.weights.h5"} <= set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def import_keras(path: str, vocab, text: str | None, size: int):
    from ._import import PARITY_TEXT, Imported, check_parity, vocab_of
    config_json, weights = _read(path, size)
    layers = _layers(config_json, path)
    try:
        import h5py
    except ImportError:
        raise UserError("importing a Keras model needs h5py and Keras: pip install 'neuroscope[interop]'") from None
    try:
        h5 = h5py.File(io.BytesIO(weights), "r")
    except OSError as exc:
        raise UserError(f"{path}: its model.weights.h5 is not a readable HDF5 file ({exc})") from None
    with h5:
        state, cfg, names = _weights(h5, layers)
    vocab = vocab_of(vocab)
    if vocab is None or len(vocab) != cfg.vocab_size:
        raise UserError(f"a Keras model holds no vocabulary: give vocab, the {cfg.vocab_size} characters in index "
                        "order" + (f" (the one given has {len(vocab)})" if vocab is not None else ""), param="vocab")
    model = CharRNN(cfg)
    model.load_state_dict(state)
    model.eval()
    ids = torch.as_tensor(vocab.encode(text or PARITY_TEXT))[None]
    softmax = layers[-1][1].get("activation") == "softmax"
    with torch.no_grad():
        ours = model(ids)[0]
    ours = torch.softmax(ours, -1) if softmax else ours
    theirs = torch.as_tensor(np.asarray(_keras_predict(path, ids.numpy())), dtype=torch.float32)
    gap = float((ours - theirs).abs().max())
    compared = "probabilities" if softmax else "logits"
    check_parity(gap, compared)
    ckpt = Checkpoint(model=model, vocab=vocab, train={"text": "imported"},
                      extra={"imported": {"source": "keras", "mapping": names}})
    return Imported(ckpt, gap, compared, "keras", names)


def _read(path: str, size: int) -> tuple[dict, bytes]:
    with zipfile.ZipFile(path) as z:
        info = {i.filename: i for i in z.infolist()}
        if info["config.json"].file_size > MAX_CONFIG_BYTES or info["model.weights.h5"].file_size > 4 * max(size, 1):
            raise UserError(f"{path} would unpack to far more than it holds; refused")
        try:
            config = json.loads(z.read("config.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: config.json is not JSON ({str(exc).splitlines()[0]})") from None
        return config, z.read("model.weights.h5")


def _layers(config, path: str) -> list[tuple[str, dict]]:
    """[(class name, layer config)] of a Sequential char-RNN, every layer checked; UserError otherwise."""
    if not isinstance(config, dict) or config.get("class_name") not in ("Sequential", "Functional"):
        raise UserError(f"{path}: not a Keras Sequential or Functional model")
    raw = (config.get("config") or {}).get("layers")
    if not isinstance(raw, list):
        raise UserError(f"{path}: its config lists no layers")
    layers = []
    for layer in raw:
        cls, cfg = (layer.get("class_name"), layer.get("config") or {}) if isinstance(layer, dict) else (None, {})
        if cls in SKIPPED:
            continue
        if cls not in ("Embedding", "Dense") and cls not in RNN_LAYERS:
            raise UserError(f"{path}: a {cls} layer is not part of a char-RNN that neuroscope reads (Embedding, "
                            "LSTM, GRU or SimpleRNN layers, Dense); it is refused, and nothing in the file ran")
        layers.append((cls, cfg))
    kinds = [c for c, _ in layers]
    rnn = kinds[1:-1]
    if len(layers) < 3 or kinds[0] != "Embedding" or kinds[-1] != "Dense" or not rnn or len(set(rnn)) != 1:
        raise UserError(f"{path}: the layers are {', '.join(kinds)}; a char-RNN is Embedding, then LSTM, GRU or "
                        "SimpleRNN layers of one kind, then Dense")
    for cls, cfg in layers[1:-1]:
        _check_rnn(cls, cfg)
    if layers[0][1].get("mask_zero"):
        raise UserError("an Embedding with mask_zero skips character 0, which neuroscope's models read")
    if layers[-1][1].get("activation") not in ("softmax", "linear", None):
        raise UserError(f"a Dense layer with activation {layers[-1][1].get('activation')!r} gives no logits")
    return layers


def _check_rnn(cls: str, cfg: dict) -> None:
    want = {"activation": "tanh", "use_bias": True, "go_backwards": False, "return_sequences": True}
    if cls != "SimpleRNN":
        want["recurrent_activation"] = "sigmoid"
    if cls == "GRU" and cfg.get("reset_after", True) is not True:
        raise UserError("a Keras GRU with reset_after=False applies the reset gate before the recurrent product; "
                        "PyTorch's GRU applies it after, so it cannot be converted exactly")
    for key, value in want.items():
        if cfg.get(key, value) != value:
            raise UserError(f"a {cls} layer with {key}={cfg.get(key)!r} is not the cell neuroscope runs ({key}={value!r})")


def _var(h5, name: str, i: int, shape: tuple, cell: bool) -> torch.Tensor:
    group = f"layers/{name}/cell/vars" if cell else f"layers/{name}/vars"
    key = f"{group}/{i}"
    if key not in h5:
        raise UserError(f"model.weights.h5 lacks {key}")
    data = h5[key]
    if tuple(data.shape) != shape or data.dtype.kind != "f":
        raise UserError(f"model.weights.h5's {key} has shape {list(data.shape)} ({data.dtype}); the config needs "
                        f"{list(shape)} floats")
    value = torch.as_tensor(np.asarray(data, dtype=np.float32))
    if not bool(torch.isfinite(value).all()):
        raise UserError(f"model.weights.h5's {key} holds NaN or infinite values")
    return value


def _weights(h5, layers) -> tuple[dict, ModelConfig, dict]:
    seen: dict = {}
    for cls, cfg in layers:
        n = seen[cls] = seen.get(cls, -1) + 1
        cfg["h5"] = H5_NAMES[cls] + (f"_{n}" if n else "")
    (_, emb), rnns, (_, dense) = layers[0], layers[1:-1], layers[-1]
    cell, G = RNN_LAYERS[rnns[0][0]]
    V, E = emb.get("input_dim"), emb.get("output_dim")
    H, L = rnns[0][1].get("units"), len(rnns)
    sizes_ok = all(isinstance(v, int) and 1 <= v <= MAX_UNITS for v in (V, E, H)) and L <= MAX_LAYERS
    if not sizes_ok or dense.get("units") != V or any(c.get("units") != H for _, c in rnns):
        raise UserError(f"the layers' sizes do not make a char-RNN (embedding {V} x {E}, units "
                        f"{[c.get('units') for _, c in rnns]}, Dense {dense.get('units')}: every recurrent layer "
                        "as wide, Dense as wide as the vocabulary)")
    state = {"encoder.weight": _var(h5, emb["h5"], 0, (V, E), False)}
    names = {"encoder.weight": f"{emb['name']}/embeddings"}
    order = torch.cat([torch.arange(H, 2 * H), torch.arange(0, H), torch.arange(2 * H, 3 * H)]) if cell == "gru" \
        else torch.arange(G * H)                  # Keras GRU z r h -> PyTorch r z n; LSTM and RNN as they are
    for k, (_, c) in enumerate(rnns):
        n_in = E if k == 0 else H
        kernel = _var(h5, c["h5"], 0, (n_in, G * H), True)
        recurrent = _var(h5, c["h5"], 1, (H, G * H), True)
        bias = _var(h5, c["h5"], 2, (2, G * H) if cell == "gru" else (G * H,), True)
        b_ih, b_hh = (bias[0], bias[1]) if cell == "gru" else (bias, torch.zeros(G * H))
        state |= {f"rnn.weight_ih_l{k}": kernel.t()[order], f"rnn.weight_hh_l{k}": recurrent.t()[order],
                  f"rnn.bias_ih_l{k}": b_ih[order], f"rnn.bias_hh_l{k}": b_hh[order]}
        names |= {f"rnn.weight_ih_l{k}": f"{c['name']}/kernel", f"rnn.weight_hh_l{k}": f"{c['name']}/recurrent_kernel",
                  f"rnn.bias_ih_l{k}": f"{c['name']}/bias", f"rnn.bias_hh_l{k}": f"{c['name']}/bias"}
    state |= {"decoder.weight": _var(h5, dense["h5"], 0, (H, V), False).t().contiguous(),
              "decoder.bias": _var(h5, dense["h5"], 1, (V,), False)}
    names |= {"decoder.weight": f"{dense['name']}/kernel", "decoder.bias": f"{dense['name']}/bias"}
    return state, ModelConfig(vocab_size=V, cell=cell, embedding_dim=E, hidden_size=H, num_layers=L), names


def _keras_predict(path: str, ids: np.ndarray) -> np.ndarray:
    """Keras' own forward of the file (safe_mode: no lambda is deserialised), on its torch backend."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise UserError("importing a Keras model checks it against Keras itself: pip install 'neuroscope[interop]'") \
            from None
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return model.predict(ids, verbose=0)
