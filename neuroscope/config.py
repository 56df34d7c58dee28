"""The knobs of a model and of a training run, as dataclasses with one comment per default.

    >>> config = TrainConfig(layers=3, hidden=512, minutes=5)
    >>> config.check()                              # UserError naming the field at fault
    >>> config.model_config(vocab_size=84)          # -> ModelConfig for CharRNN

These defaults are the only copy: the CLI's option defaults are read from here. The module imports
nothing heavier than the error type, so building the CLI does not import torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real

from .errors import UserError

CELLS = ("lstm", "gru", "rnn", "mingru", "minlstm", "slstm", "mlstm", "ssm")   # see neuroscope.cells
MLSTM_HEADS = 4            # an mLSTM layer's heads: hidden_size must be a multiple of it
SSM_STATE = 8              # N: an SSM layer keeps an N-wide state per unit (H x N numbers a layer)
DEVICES = ("auto", "cpu", "cuda")
SAMPLE_AT = (100, 300, 500, 700, 1200, 2000)
# The demo's training steps (neuroscope.report.run_demo): 2,000 windows of 32 x 100 characters, 4 passes
# over its 1.6M training characters. A step of its 2 x 128 LSTM costs 0.073-0.077 s of CPU at one
# thread (measured niced beside other jobs); the whole demo took 2 min 37 s niced on 2 cores beside
# other jobs (training 143 s), so 2-3 minutes on an idle 2-core machine.
DEMO_STEPS = 2_000
# Upper bounds for a stored config. One LSTM layer of H units holds 8*H*H recurrent weights: 16,384
# units make 2e9 of them (8 GiB in float32), far past any char-RNN; a larger claim is a corrupt file.
MAX_UNITS = 16_384
# Each layer is one sequential pass over the text; 64 is deeper than any recurrent LM in practice.
MAX_LAYERS = 64
# Sampling is one forward step per character (~0.1 ms to 1 ms): a million characters is minutes of
# work and a megabyte of output, more than anyone reads; a bigger length is a typo.
MAX_SAMPLE_CHARS = 1_000_000
# Any other count of a training run (steps, characters, streams): 2**40 is past any real run (a
# trillion steps is centuries) and keeps every product of counts far inside torch's 64-bit sizes.
MAX_COUNT = 2 ** 40
# Seeds are 32-bit, as numpy's are; sampling seeds derive from seed * 1_000_003 + step, which then
# stays inside the 64 bits torch.manual_seed takes.
MAX_SEED = 2 ** 32 - 1
# A time budget longer than a year is a typo (and inf would never stop a run without steps).
MAX_MINUTES = 60 * 24 * 366
# streams="auto" (the default of probe, explain and match): one exact stream up to AUTO_EXACT_CHARS characters; a
# longer text in min(AUTO_STREAMS, n // AUTO_PIECE) pieces, each read after AUTO_WARMUP characters, so
# that a piece is at least 4x its warm-up (the warm-up then adds at most a quarter to the steps).
AUTO_EXACT_CHARS = 16_384
AUTO_STREAMS = 64
AUTO_PIECE = 1_024
AUTO_WARMUP = 256


def auto_streams(n: int) -> int:
    """The streams "auto" picks for n characters: 1 (exact) up to AUTO_EXACT_CHARS, else
    min(AUTO_STREAMS, n // AUTO_PIECE). Reading 64 pieces side by side is 2-3x faster per character
    on a CPU than one stream; each piece but the first starts from an approximate state."""
    return 1 if n <= AUTO_EXACT_CHARS else min(AUTO_STREAMS, n // AUTO_PIECE)


def configured(kind: type, config=None, overrides: dict | None = None):
    """The config an analysis runs with: `config` (default kind()) with `overrides` replacing its fields,
    the one rule behind every `analysis(model, text, ..., config=None, **overrides)`. A UserError names
    an override that is not a field of kind, or a config of another kind."""
    base = kind() if config is None else config
    if not isinstance(base, kind):
        raise UserError(f"config must be a {kind.__name__}, got {type(base).__name__}", param="config")
    unknown = sorted(set(overrides or {}) - {f.name for f in fields(kind)})
    if unknown:
        raise UserError(f"{unknown[0]!r} is not a setting of {kind.__name__}; its settings: "
                        f"{', '.join(f.name for f in fields(kind))}", param="config")
    return replace(base, **overrides) if overrides else base


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"          # one of CELLS: lstm | gru | rnn (tanh) | mingru | minlstm | slstm | mlstm | ssm
    embedding_dim: int = 0      # 0: same as hidden_size, as in the reference checkpoints
    hidden_size: int = 128      # H, units per layer
    num_layers: int = 2         # L
    dropout: float = 0.0        # between recurrent layers, and on the top layer's output

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if not fits_cell(self.cell, self.hidden_size):
            raise ValueError(cell_rule(self.cell))
        if self.embedding_dim <= 0:
            self.embedding_dim = self.hidden_size

    def to_dict(self) -> dict:
        """The checkpoint's "config" (vocab_size lives in the checkpoint's vocab)."""
        d = asdict(self)
        d.pop("vocab_size")
        return d


def fits_cell(cell: str, hidden_size) -> bool:
    """Whether a cell can have `hidden_size` units a layer (an mLSTM's are split evenly among its heads)."""
    return cell != "mlstm" or (is_int(hidden_size) and hidden_size % MLSTM_HEADS == 0)


def cell_rule(cell: str) -> str:
    return f"an {cell} layer needs a hidden size that is a multiple of {MLSTM_HEADS} (its heads)"


def is_int(value) -> bool:
    """An integer, and not a bool (True is an int to Python, never a size to us)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def model_config_from_dict(raw, vocab_size: int) -> ModelConfig:
    """The ModelConfig a checkpoint's "config" describes, every field checked for type and range.

    Raises UserError with one line naming the field; builds nothing, so it is cheap on any input.
    An embedding_dim that is missing, None or 0 means the same as hidden_size (the reference layout).
    """
    if not isinstance(raw, dict):
        raise UserError(f"config must be a dict (got {type(raw).__name__})")
    if raw.get("cell") not in CELLS:
        raise UserError(f"unknown cell {short_repr(raw.get('cell'))} (known: {', '.join(CELLS)})")
    sizes = {"hidden_size": raw.get("hidden_size"), "num_layers": raw.get("num_layers"),
             "embedding_dim": raw.get("embedding_dim") or raw.get("hidden_size")}
    for name, value in sizes.items():
        top = MAX_LAYERS if name == "num_layers" else MAX_UNITS
        if not (is_int(value) and 1 <= value <= top):
            raise UserError(f"{name} must be an integer in [1, {top:,}] (got {short_repr(value)})")
    if not fits_cell(raw["cell"], sizes["hidden_size"]):
        raise UserError(f"hidden_size {sizes['hidden_size']}: {cell_rule(raw['cell'])}")
    dropout = raw.get("dropout", 0.0)
    if not (isinstance(dropout, Real) and not isinstance(dropout, bool) and 0 <= dropout < 1):
        raise UserError(f"dropout must be a number in [0, 1) (got {short_repr(dropout)})")
    return ModelConfig(vocab_size=vocab_size, cell=raw["cell"], embedding_dim=int(sizes["embedding_dim"]),
                       hidden_size=int(sizes["hidden_size"]), num_layers=int(sizes["num_layers"]),
                       dropout=float(dropout))


def short_repr(value) -> str:
    """repr(value), cut to fit in a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_number(value) -> bool:
    """A real number that is not NaN, and not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)


@dataclass
class TrainConfig:
    cell: str = "lstm"              # one of CELLS (neuroscope.cells describes each)
    layers: int = 2                 # L, recurrent layers
    hidden: int = 128               # H, units per layer
    embedding: int = 0              # E; 0: same as hidden (the reference layout)
    dropout: float = 0.1            # between layers and before the decoder
    batch: int = 64                 # B, parallel streams
    seq: int = 128                  # T, characters per window (truncated BPTT length)
    lr: float = 2e-3                # Adam learning rate at the start
    steps: int | None = 2000        # stop after this many steps in total (None: only `minutes`)
    minutes: float | None = None    # stop after this much wall-clock time in this call (None: only `steps`)
    device: str = "auto"            # auto | cpu | cuda
    seed: int = 0                   # initial weights, dropout, sampling
    eval_every: int = 200           # steps between validation losses (and checkpoint writes)
    val_chars: int = 100_000        # validation sample: the first this many chars of the val split (0: all)
    val_streams: int = 16           # the validation sample is read as this many parallel streams
    sample_at: tuple = SAMPLE_AT    # steps at which to store a sample (besides every evaluation)
    sample_chars: int = 200         # characters per stored sample
    final_sample_chars: int = 500   # characters of the two final samples (temperature 1 and 0.5)
    clip: float = 5.0               # gradient norm clipping
    lr_decay: float = 0.5           # learning-rate factor when the validation loss does not improve
    test_chars: int = 0             # final test loss on the first this many chars of the test split (0: all)
    max_chars: int = 0              # train on the first this many chars of the text (0: all)

    def check(self) -> None:
        """Raise UserError (one line, naming the field) on a value no run can use, or that would make a
        checkpoint `load_checkpoint` refuses (the model's limits are MAX_LAYERS and MAX_UNITS)."""
        for name, ok, rule in self._rules():
            if not ok:
                raise UserError(f"{name} {rule} (got {short_repr(getattr(self, name))})", param=name)
        if self.steps is None and self.minutes is None:
            raise UserError("give steps or minutes (or both)")
        if not (self.device in DEVICES or self.device.startswith("cuda:")):
            raise UserError(f"unknown device {self.device!r}; choose auto, cpu or cuda", param="device")

    def _rules(self):
        """(field, holds, what it must be) for every field, in order: its type first, then its range.
        Nothing here raises on a value of the wrong type (resumed runs read these from a file)."""
        for name, (lo, hi) in INT_RANGES.items():
            value = getattr(self, name)
            yield name, is_int(value), "must be an integer"
            yield name, lo <= value <= hi, f"must be >= {lo:,} and <= {hi:,}"
        for name in ("steps", "minutes"):
            value = getattr(self, name)
            if value is not None:
                kind_ok = is_int(value) if name == "steps" else is_number(value)
                yield name, kind_ok, "must be an integer" if name == "steps" else "must be a number"
        yield "steps", self.steps is None or 1 <= self.steps <= MAX_COUNT, f"must be >= 1 and <= {MAX_COUNT:,}"
        yield "minutes", self.minutes is None or 0 < self.minutes <= MAX_MINUTES, \
            f"must be > 0 and <= {MAX_MINUTES:,} (a year)"
        yield "cell", self.cell in CELLS, f"must be one of {', '.join(CELLS)}"
        yield "hidden", fits_cell(self.cell, self.hidden), f"must be a multiple of {MLSTM_HEADS} for an mlstm cell"
        yield "device", isinstance(self.device, str), "must be a string"
        for name in ("dropout", "lr", "clip", "lr_decay"):
            yield name, is_number(getattr(self, name)), "must be a number"
        yield "dropout", 0 <= self.dropout < 1, "must be in [0, 1)"
        # Adam moves each weight by about lr a step; above 1 a run only diverges (and past ~3e37 torch overflows).
        yield "lr", 0 < self.lr <= 1, "must be > 0 and <= 1"
        yield "clip", self.clip > 0, "must be > 0"
        # torch's ReduceLROnPlateau refuses a factor of 1.
        yield "lr_decay", 0 < self.lr_decay < 1, "must be in (0, 1)"
        steps = self.sample_at if isinstance(self.sample_at, (tuple, list)) else [None]
        yield "sample_at", all(is_int(s) and 1 <= s <= MAX_COUNT for s in steps), \
            f"must be steps >= 1 and <= {MAX_COUNT:,}"

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, cell=self.cell, embedding_dim=self.embedding,
                           hidden_size=self.hidden, num_layers=self.layers, dropout=self.dropout)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sample_at"] = [int(s) for s in self.sample_at]
        return d


# TrainConfig's integer fields and their ranges [lo, hi]: the model's sizes within what a checkpoint may
# hold (model_config_from_dict), samples within what CharRNN.sample draws, the rest within MAX_COUNT.
INT_RANGES = {"layers": (1, MAX_LAYERS), "hidden": (1, MAX_UNITS), "embedding": (0, MAX_UNITS),
              "batch": (1, MAX_COUNT), "seq": (1, MAX_COUNT), "eval_every": (1, MAX_COUNT),
              "val_streams": (1, MAX_COUNT), "sample_chars": (1, MAX_SAMPLE_CHARS),
              "final_sample_chars": (1, MAX_SAMPLE_CHARS), "val_chars": (0, MAX_COUNT),
              "test_chars": (0, MAX_COUNT), "max_chars": (0, MAX_COUNT), "seed": (0, MAX_SEED)}


MAX_LATENTS = 1 << 18


@dataclass(frozen=True)
class DictionaryConfig:
    """How neuroscope.dictionary.train_dictionary trains a TopK autoencoder (the CLI's defaults too)."""

    latents: int = 4096          # d_sae: latents in the dictionary
    k: int = 32                  # latents on per character (TopK)
    # Matryoshka prefixes (Bussmann et al. 2025): the first m latents must also reconstruct alone, for each
    # m here, so general features gather in early latents instead of splitting. Empty: plain TopK.
    nested: tuple[int, ...] = ()
    # BatchTopK (Bussmann et al. 2024): k x batch latents selected over the whole batch, k per row on
    # average; read afterwards as a JumpReLU at the learned threshold. False: k per row (TopK).
    batch_topk: bool = False
    epochs: int = 2              # passes over the training text, each recorded afresh
    batch: int = 1024            # rows per step
    # Adam's. Gao et al.'s rule, 2e-4 / sqrt(latents / 2**14), gives 4e-4 at 4,096 latents; for our short
    # runs 1e-3 converges faster (enwiki l1.c, 200k chars x 4 epochs: held-out FVU 0.158 against 0.186).
    lr: float = 1e-3
    block: int = 131_072         # the shuffle buffer in rows (memory: block x units x 4 bytes)
    dead_after: int = 250_000    # rows without firing after which a latent is dead (AuxK revives it)
    seed: int = 0
    streams: int | str = "auto"  # how the recording reads the text (record.iter_states)
    warmup: int = 256
    device: str = "cpu"          # where the autoencoder trains ("cuda" on a GPU)
    progress: bool = True

    def __post_init__(self):
        whole = {"latents": (1, MAX_LATENTS), "k": (1, MAX_LATENTS), "epochs": (1, 1000), "batch": (2, 1 << 20),
                 "block": (2, 1 << 26), "dead_after": (1, 1 << 62), "seed": (0, (1 << 63) - 1)}
        for name, (lo, hi) in whole.items():
            v = getattr(self, name)
            if not is_int(v) or not lo <= v <= hi:
                raise UserError(f"{name} must be a whole number from {lo:,} to {hi:,}, got {v!r}", param=name)
        if self.k > self.latents:
            raise UserError(f"k ({self.k}) must not exceed latents ({self.latents})", param="k")
        nested = tuple(self.nested) if isinstance(self.nested, (list, tuple)) else (self.nested,)
        object.__setattr__(self, "nested", nested)            # frozen: a list from JSON becomes the tuple
        if not all(is_int(m) and 1 <= m < self.latents for m in self.nested) or list(self.nested) != sorted(set(self.nested)):
            raise UserError(f"nested must be increasing whole numbers below latents ({self.latents}), got "
                            f"{list(self.nested)!r}", param="nested")
        if not isinstance(self.batch_topk, bool):
            raise UserError(f"batch_topk must be true or false, got {self.batch_topk!r}", param="batch_topk")
        if self.batch > self.block:
            raise UserError(f"batch ({self.batch}) must not exceed block ({self.block})", param="batch")
        if not (isinstance(self.lr, Real) and 0 < self.lr < 1):
            raise UserError(f"lr must be a number in (0, 1), got {self.lr!r}", param="lr")
