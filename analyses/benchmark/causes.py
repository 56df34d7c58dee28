"""neuroscope.causes against the forward it must at least run: a patch vs the fused nn.LSTM forward over
base and source; the occlusions of a 100-character window vs one fused forward over the same
characters; integrated gradients (how many path points completeness took, and their time)."""
from __future__ import annotations

import os

from analyses._paths import SHARED

from .timing import load_average, median_time


def run(ckpt, chars, window, threads, repeats) -> dict:
    """On the first `chars` characters of warpeace.txt's test split: a forced patch of every state half-way
    (two rows side by side, the source recorded up to the step), one unit's occlusions and its integrated
    gradients over the `window` characters before the last one. Medians of `repeats`."""
    import numpy as np
    import torch

    from neuroscope.causes import attribute, patch
    from neuroscope.checkpoint import choose_text, load_checkpoint

    torch.set_num_threads(threads)
    c = load_checkpoint(ckpt)
    text = choose_text(c, str(SHARED / "data" / "warpeace.txt"), "test").text[:chars]
    base, source, at = text, text[1:] + text[:1], chars // 2
    x = torch.as_tensor(c.vocab.encode(text))[None]

    def fused():
        with torch.no_grad():
            c.model.rnn(c.model.encoder(x))
    fused()
    t_fused = median_time(fused, repeats)
    t_patch = median_time(lambda: patch(c, base, source, at), repeats)
    occ = lambda: attribute(c, text, "l2.c.328", chars - 1, window=window, methods="occlusion")  # noqa: E731
    t_occ = median_time(occ, repeats)
    xs = x[:, :chars - 1 - window]

    def prefix():
        with torch.no_grad():
            c.model.rnn(c.model.encoder(xs))
    t_prefix = median_time(prefix, repeats)
    ig = []
    t_ig = median_time(lambda: ig.append(attribute(c, text, "l2.c.328", chars - 1, window=window, methods="ig")),
                       repeats)
    return {"device": f"cpu ({threads} threads)", "ckpt": os.path.basename(ckpt), "chars": chars, "window": window,
            "fused_s": round(t_fused, 3), "patch_s": round(t_patch, 3), "patch_ratio": round(t_patch / (2 * t_fused), 2),
            "occlusion_s": round(t_occ, 3), "prefix_s": round(t_prefix, 3),
            "occlusion_ratio": round(t_occ / t_fused, 2), "occlusions_beyond_prefix_s": round(t_occ - t_prefix, 3),
            "ig_s": round(t_ig, 3), "ig_completeness": float(np.median([a.completeness for a in ig])),
            "load_average": load_average()}
