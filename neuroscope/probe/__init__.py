"""Probe a CharRNN: which units track a feature, how strongly, is it real, does the model use it?

    >>> from neuroscope.features import label
    >>> result = probe(ckpt, text, {"in_quote": label(text, "in_quote")}, ablate=4)
    >>> result.ranking.head()               # one row per (feature, layer, state, unit), by |r|
    >>> result.top_units("in_quote", 3)     # ["l2.c.323", ...]
    >>> result.topk, result.sparse, result.ablation, result.baselines, result.meta
    >>> probe(ckpt, text, features, config=ProbeConfig(streams=1, null=False))    # exact, no null

A unit's value is h, or tanh(c) for a cell state (what the cell passes on, h = o * tanh(c); some
cells integrate c into the thousands). What is computed on which characters of `text` (N characters,
row k = state after reading text[k], label k = the feature after reading text[k]), stage by stage:

| stage | what | characters |
| --- | --- | --- |
| ranking | r, mean_on, mean_off, baseline_max_abs_r | all N, one streaming pass (float64 sufficient statistics) in stream_layout(N, streams, warmup) |
| ranking | auroc, spearman | the sample: the first min(N, sample_chars, sample_mb cap), every k-th (k = ceil(sample / rank_chars)) |
| ranking | control_max_abs_r, selectivity | about control_chars: the first control_chars / streams of every piece (all N if a feature is constant there), the control model |
| null | p_value, p_adjusted | the sample |
| sparse | sparse probes, top-k curve | the first sparse_chars of the sample: fit on its first 2/3, scored on the rest |
| ablation | loss change | the first ablate_chars |

The sample is the text's first characters, kept contiguous so that the null keeps the
autocorrelation; only it (float32, all recorded units, at most sample_mb) is held in memory, so
probing 10M characters costs the sample plus O(units x features), never [N x units].
"""
from .. import callable_module
from ._config import MIN_CHARS, ProbeConfig
from ._pipeline import probe
from ._ranking import control_model
from ._result import ProbeResult

__all__ = ["MIN_CHARS", "ProbeConfig", "ProbeResult", "control_model", "probe"]

callable_module(__name__)
