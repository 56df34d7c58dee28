"""The split of a text into the fitting part and the held-out part.

The text is cut into blocks of `block` characters and, of every three blocks, two fit and one is
held out (for fit_share 2/3; another share spreads the held-out blocks as evenly). Held-out blocks
are spread over the whole text because a text drifts: the last third of War and Peace's test split
is the essay of the second epilogue, where a quote cell has no quotes to track, and a last third of
C can be one driver's tables. Blocks of 2,000 characters are long against the few hundred
characters a state carries, so what is scored is still text the choices were not made on.
block=0 keeps one fitting part followed by one held-out part (a later text, as a user may want).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError

BLOCK = 2000               # characters per block
MIN_BLOCKS = 12             # a short text gets smaller blocks, never fewer than this many
MIN_FIT_CHARS = 1000        # below these the quantiles and IoUs are too coarse to mean anything
MIN_HELDOUT_CHARS = 500


@dataclass(frozen=True)
class Split:
    """held: bool [N], True on the held-out characters; block: the block size used (0: one cut)."""

    held: np.ndarray
    block: int

    @property
    def n_fit(self) -> int:
        return int(len(self.held) - self.held.sum())

    def describe(self, offset: int = 0) -> dict:
        n = len(self.held)
        if self.block == 0:
            return {"block": 0, "fit": [offset, offset + self.n_fit], "heldout": [offset + self.n_fit, offset + n]}
        return {"block": self.block, "fit_chars": self.n_fit, "heldout_chars": n - self.n_fit,
                "heldout_blocks": int(self.held[::self.block].sum()), "blocks": -(-n // self.block)}


def split(n_chars: int, fit_share: float, block: int) -> Split:
    """The split of n_chars characters; a UserError when a part is too short to score."""
    if block < 0:
        raise UserError(f"block must be 0 (one cut) or a number of characters, got {block}", param="block")
    if block == 0:
        held = np.arange(n_chars) >= int(n_chars * fit_share)
        size = 0
    else:
        size = min(block, max(1, n_chars // MIN_BLOCKS))
        b = np.arange(-(-n_chars // size))
        share = 1 - fit_share
        held_blocks = np.floor((b + 1) * share + 1e-9) > np.floor(b * share + 1e-9)
        held = np.repeat(held_blocks, size)[:n_chars]
    out = Split(held, size)
    if out.n_fit < MIN_FIT_CHARS or n_chars - out.n_fit < MIN_HELDOUT_CHARS:
        need = int(np.ceil(max(MIN_FIT_CHARS / fit_share, MIN_HELDOUT_CHARS / (1 - fit_share))))
        raise UserError(f"the text has {n_chars:,} characters; explaining needs at least {need:,} (a fitting "
                        f"part of {MIN_FIT_CHARS:,} and a held-out part of {MIN_HELDOUT_CHARS:,})")
    return out
