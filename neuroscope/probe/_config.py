"""ProbeConfig: every setting of neuroscope.probe.probe, with its default and why.

    >>> cfg = ProbeConfig(null=False, ablate=4)
    >>> probe(ckpt, text, features, config=cfg)         # or probe(ckpt, text, features, null=False, ablate=4)
    >>> dataclasses.replace(cfg, streams=16)            # a variant
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from ..errors import UserError
from ..names import parse_states
from ..record import AUTO_WARMUP
from ..stats import CORRECTIONS

MIN_CHARS = 100          # below this no statistic of a probe means anything


@dataclass(frozen=True)
class ProbeConfig:
    """What probe() computes and on which characters; see neuroscope.probe for the stages."""

    # What is ranked.
    states: tuple[str, ...] = ("h", "c")   # quantities to record: h, c, gates or single gates (names.parse_states)
    squash_c: bool = True       # a cell state's value is tanh(c), what the cell passes on; False: raw c
    baselines: bool = True      # rank the char-class baselines too, and flag units one of them tracks as well
    # How the text is recorded (neuroscope.record.iter_blocks).
    streams: int | str = "auto" # parallel pieces: "auto" = one exact stream up to 16,384 characters, else up
                                # to 64 (record.auto_streams; 2-3x faster); 1 = exact at any length
    warmup: int = AUTO_WARMUP   # with streams > 1: characters each piece reads first, then discards
    chunk: int = 4096           # characters per recorded block: memory is chunk x units x 4 bytes
    progress: bool = False      # progress bars on stderr
    # The sample: the text's first characters, contiguous, held in memory for ranks, null and probes.
    sample_chars: int = 80_000  # at most this many characters...
    sample_mb: int = 1024       # ...and at most this many MiB of float32 for all units
    rank_chars: int = 20_000    # auroc and spearman on every k-th character of the sample, this many at most
    # The circular-shift null on the sample.
    null: bool = True           # p-values for the best units of each feature
    min_shift: int = 1000       # shortest rotation either way: longer than the autocorrelation of most features
    null_units: int = 64        # units tested per feature (the best by |r|); the others count as p = 1
    correction: str = "holm"    # "holm" (family-wise) or "bh" (false discovery rate), over all units
    alpha: float = 0.05         # significance level of the corrected p-values
    # The control: the same architecture with random weights.
    control: bool = True        # probe it too; a unit must beat its best |r| (selectivity > 0)
    control_chars: int = 32_768 # its max |r| on about this many, in windows spread over the text (docs/probing.md)
    seed: int = 0               # seeds the control model and the ablation's random unit sets
    # Sparse probes on the sample.
    sparse: bool = True         # the L1 probe on all units and the top-k curve
    sparse_chars: int = 12_000  # characters of the sample used: fit on the first 2/3, scored on the rest
    topk_max: int = 256         # largest k of the curve (k = 1, 2, 4, ...) before "all units"
    # Ablation inside the recurrence.
    ablate: int = 0             # zero the top K units of each feature (0: no ablation)
    ablate_chars: int = 20_000  # characters whose loss is compared
    ablate_draws: int = 20      # random K-unit sets from the same layers and states, for comparison

    def __post_init__(self):
        object.__setattr__(self, "states", parse_states(self.states))
        whole = isinstance(self.streams, numbers.Integral) and not isinstance(self.streams, bool)
        if not (whole and self.streams >= 1 or isinstance(self.streams, str) and self.streams == "auto"):
            raise UserError(f"streams must be \"auto\" or a whole number >= 1, got {self.streams!r}", param="streams")
        if self.correction not in CORRECTIONS:
            raise UserError(f"unknown correction {self.correction!r}; choose one of {', '.join(CORRECTIONS)}",
                            param="correction")
