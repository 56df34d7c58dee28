"""Causes, not only correlations: does the model use a state, and for what?

    >>> from neuroscope.causes import patch        # also neuroscope.patch
    >>> r = patch(ckpt, base='He said "no', source="He said, no", at=10, what=["l2.c.323"])
    >>> r.summary()["kl_mean"], r.steps[["position", "next", "p_clean", "p_patched"]]

`patch` replaces part of the base's recurrent state (every state, a quantity, units, or a dictionary's
latents: `target`) by the source's at chosen steps, then reads on (forced) or samples (free), and
compares every later prediction with the clean base's. `interchange` measures, over many pairs of
contexts that differ in a feature, how often patching a feature's units moves the model's behaviour to
the source's (interchange intervention accuracy). `attribute` scores the characters before one
character by how much they drive a unit there (occlusion and integrated gradients).
"""
from ._attribute import Attribution, attribute
from ._interchange import Behaviour, InterchangeResult, interchange, pairs
from ._patch import MAX_CHARS, MAX_FREE, PatchConfig, PatchResult, patch, patch_edits, run_traced, source_plan
from ._target import Target, target

__all__ = ["Attribution", "Behaviour", "InterchangeResult", "MAX_CHARS", "MAX_FREE", "PatchConfig", "PatchResult", "Target", "attribute", "interchange", "pairs",
           "patch", "patch_edits", "run_traced", "source_plan", "target"]
