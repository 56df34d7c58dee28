"""A dictionary on disk, in SAELens' folder layout, loaded as untrusted input.

    dict/cfg.json                    SAELens' config (d_in, d_sae, architecture "topk" or, for BatchTopK,
                                     "jumprelu", k, hook_name, ...)
                                     plus "format": "neuroscope-dictionary/1" and a "neuroscope" section:
                                     the quantity, the model's fingerprint, training and held-out numbers
    dict/sae_weights.safetensors     W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_in], b_dec (float32);
                                     "jumprelu" also threshold [d_sae] (SAELens' form of a BatchTopK SAE)
    dict/training_state.safetensors  only while training is unfinished: Adam's moments, the step, the
                                     rows each latent last fired at (what `resume` continues from)

safetensors holds tensors and nothing that runs; the config is bounded JSON. Every field is checked
against the weights, and the fingerprint and quantity against the model, before anything is built: a
dictionary for another model or quantity is refused in one line.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..files import DICTIONARY_FORMAT, json_ready, publish_dir, temp_dir
from ..hooks import SHOWN_C
from ..names import latent_id, parse_quantity, quantity_name, state_names
from ..stats import shown
from ..text import read_bytes
from ._sae import TopKSAE

CFG, WEIGHTS, STATE = "cfg.json", "sae_weights.safetensors", "training_state.safetensors"
MAX_CFG_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 4 << 30          # 4 GiB: 262,144 latents over 2,048 values in float32
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
ARCHITECTURES = ("topk", "jumprelu")     # jumprelu: a BatchTopK dictionary read at its threshold


class DictionaryError(UserError):
    """A dictionary folder that cannot be used; one line."""


@dataclass
class Dictionary:
    """A trained dictionary over one quantity (`rnn.l1.c`) of one model (`fingerprint`)."""

    sae: TopKSAE
    quantity: str
    fingerprint: str
    info: dict = field(default_factory=dict)     # training and held-out numbers, "complete"
    path: Path | None = None

    @property
    def prefix(self) -> str:
        """The name of its latents before the index: "l1.c/d" (see neuroscope.names)."""
        return latent_id(self.quantity, 0).rsplit(".", 1)[0]

    @property
    def edit_point(self) -> str:
        """Where the recurrence is edited for it (splice, steering, ablation): its quantity for h; for a
        cell "rnn.lK.tanh_c", tanh(c_t) as h_t = o_t * tanh(c_t) reads it (hooks.SHOWN_C), so that the
        memory c_t stays the model's own."""
        return self.quantity[:-1] + SHOWN_C if parse_quantity(self.quantity).squash else self.quantity

    def latents(self, raw: torch.Tensor) -> torch.Tensor:
        """Latents [..., d_sae] of raw states [..., d_in] of its quantity (shown first: tanh for a cell)."""
        with torch.no_grad():
            return self.sae.encode(shown(raw, parse_quantity(self.quantity).squash).to(self.sae.W_dec.device))


def model_fingerprint(model) -> str:
    """16 hex digits of sha256 over the model's weights (names, shapes and float32 values, in order)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def saelens_config(d: Dictionary) -> dict:
    """cfg.json: SAELens' field names for what it needs, ours under "neuroscope"."""
    sae = d.sae
    act = {"architecture": "topk", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": sae.k}} \
        if sae.threshold is None else {"architecture": "jumprelu", "activation_fn_str": "relu"}
    return {"format": DICTIONARY_FORMAT, **act, "d_in": sae.d_in, "d_sae": sae.d_sae, "k": sae.k,
            "apply_b_dec_to_input": True, "normalize_activations": "none", "dtype": "float32", "device": "cpu",
            "model_name": f"neuroscope:{d.fingerprint}", "hook_name": d.quantity,
            "hook_layer": parse_quantity(d.quantity).layer,
            "neuroscope": {"quantity": d.quantity, "fingerprint": d.fingerprint, **d.info}}


def write_folder(folder: Path, d: Dictionary, state: dict[str, torch.Tensor] | None = None) -> None:
    """Fill an empty folder with cfg.json, the weights and (unfinished) the training state."""
    from safetensors.torch import save_file
    names = WEIGHT_NAMES + (() if d.sae.threshold is None else ("threshold",))
    save_file({n: getattr(d.sae, n).detach().float().cpu().contiguous() for n in names}, folder / WEIGHTS)
    if state is not None:
        save_file({n: t.contiguous() for n, t in state.items()}, folder / STATE)
    text = json.dumps(json_ready(saelens_config(d)), indent=2, allow_nan=False)
    (folder / CFG).write_text(text + "\n", encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    for p in folder.iterdir():                  # safetensors writes its files private; a dictionary is not
        os.chmod(p, 0o666 & ~umask)


def save_dictionary(out: str | os.PathLike, d: Dictionary, state=None, force: bool = False, inputs=()) -> Path:
    """Write the folder atomically (a hidden temporary renamed into place; neuroscope.files' rules)."""
    out = Path(out)
    with temp_dir(out) as tmp:
        write_folder(tmp, d, state)
        publish_dir(tmp, out, "dictionary", force, inputs)
    return out


def load_dictionary(path: str | os.PathLike, model=None, with_state: bool = False):
    """The Dictionary in folder `path`, checked; with `model`, refused unless trained on its weights and the
    quantity exists there. with_state: also return the training state ({} when finished)."""
    path = Path(path)
    if not path.is_dir():
        raise DictionaryError(f"{path} is not a dictionary folder (expected {CFG} and {WEIGHTS} inside)")
    cfg = _config(path)
    ours = cfg["neuroscope"]
    sae = TopKSAE(cfg["d_in"], cfg["d_sae"], cfg["k"])
    weights = _tensors(path / WEIGHTS)
    _check_weights(path, weights, sae, cfg["architecture"])
    with torch.no_grad():
        for n in WEIGHT_NAMES:
            getattr(sae, n).copy_(weights[n])
    if cfg["architecture"] == "jumprelu":
        sae.threshold = weights["threshold"].clone()
    d = Dictionary(sae, ours["quantity"], ours["fingerprint"],
                   {k: v for k, v in ours.items() if k not in ("quantity", "fingerprint")}, path)
    if model is not None:
        check_fits(d, model)
    if not with_state:
        return d
    return d, (_tensors(path / STATE) if (path / STATE).exists() else {})


def as_dictionary(dictionary, model) -> Dictionary | None:
    """What an analysis was given as its dictionary: None stays None; a folder is loaded; either is
    checked to belong to `model` (check_fits)."""
    if dictionary is None:
        return None
    if isinstance(dictionary, (str, os.PathLike)):
        return load_dictionary(dictionary, model)
    check_fits(dictionary, model)
    return dictionary


def check_fits(d: Dictionary, model) -> None:
    """Refuse a dictionary trained on another model, or over a quantity this model lacks."""
    q = parse_quantity(d.quantity)
    cfg = model.config
    if model_fingerprint(model) != d.fingerprint:
        raise DictionaryError(f"{d.path or 'the dictionary'} was trained on another model (fingerprint "
                              f"{d.fingerprint}, this model's is {model_fingerprint(model)})")
    if q.name not in state_names(cfg, ("h", "c")) or d.sae.d_in != cfg.hidden_size:
        raise DictionaryError(f"{d.path or 'the dictionary'} reads {d.quantity} of {d.sae.d_in} values, "
                              f"which this model does not have")


def _config(path: Path) -> dict:
    raw = read_bytes(path / CFG, "dictionary config", MAX_CFG_BYTES, DictionaryError)
    try:
        cfg = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise DictionaryError(f"{path / CFG} is not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != DICTIONARY_FORMAT:
        raise DictionaryError(f"{path} is not a neuroscope dictionary ({CFG} lacks "
                              f"\"format\": \"{DICTIONARY_FORMAT}\")")
    ours = cfg.get("neuroscope")
    sizes = [cfg.get(key) for key in ("d_in", "d_sae", "k")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 20 for v in sizes):
        raise DictionaryError(f"{path / CFG}: d_in, d_sae and k must be whole numbers from 1 to {1 << 20:,}")
    if cfg.get("architecture", "topk") not in ARCHITECTURES:
        raise DictionaryError(f"{path / CFG}: architecture must be one of {', '.join(ARCHITECTURES)}, got "
                              f"{str(cfg.get('architecture'))[:40]!r}")
    cfg.setdefault("architecture", "topk")
    kwargs = cfg.get("activation_fn_kwargs")
    if isinstance(kwargs, dict) and "k" in kwargs and kwargs["k"] != cfg["k"]:
        raise DictionaryError(f"{path / CFG}: k {cfg['k']} and activation_fn_kwargs.k {str(kwargs['k'])[:20]} differ")
    if cfg["k"] > cfg["d_sae"]:
        raise DictionaryError(f"{path / CFG}: k {cfg['k']} exceeds d_sae {cfg['d_sae']}")
    if not isinstance(ours, dict) or not isinstance(ours.get("fingerprint"), str):
        raise DictionaryError(f"{path / CFG} has no \"neuroscope\" section with the model's fingerprint")
    try:
        q = parse_quantity(str(ours.get("quantity")))
    except UserError:
        raise DictionaryError(f"{path / CFG}: unknown quantity {str(ours.get('quantity'))[:40]!r}") from None
    if q.state not in ("h", "c"):
        raise DictionaryError(f"{path / CFG}: a dictionary reads h or c, not {q.name}")
    ours["quantity"] = quantity_name(q.layer, q.state)
    return cfg


def _tensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load
    raw = read_bytes(p, "dictionary file", MAX_WEIGHTS_BYTES, DictionaryError) if p.exists() else None
    if raw is None:
        raise DictionaryError(f"{p} is missing")
    try:
        return load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise DictionaryError(f"{p} is not a safetensors file ({str(exc).splitlines()[0][:120]})") from None


def _check_weights(path: Path, weights: dict, sae: TopKSAE, architecture: str) -> None:
    shapes = {n: tuple(getattr(sae, n).shape) for n in WEIGHT_NAMES}
    if architecture == "jumprelu":
        shapes["threshold"] = (sae.d_sae,)
    for n, want in shapes.items():
        t = weights.get(n)
        if t is None or tuple(t.shape) != want or t.dtype != torch.float32:
            got = "missing" if t is None else f"{t.dtype} {tuple(t.shape)}"
            raise DictionaryError(f"{path / WEIGHTS}: {n} must be float32 {want}, found {got}")
        if not bool(torch.isfinite(t).all()):
            raise DictionaryError(f"{path / WEIGHTS}: {n} holds NaN or inf")
    if not math.isclose(float(weights["W_dec"].norm(dim=1).mean()), 1.0, rel_tol=1e-3):
        raise DictionaryError(f"{path / WEIGHTS}: decoder rows must have unit norm")
    if architecture == "jumprelu" and bool((weights["threshold"] < 0).any()):
        raise DictionaryError(f"{path / WEIGHTS}: a JumpReLU threshold must not be negative")
