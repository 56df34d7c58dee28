"""ReportConfig: every setting of neuroscope.report.build_report, with its default and why.

    >>> build_report(ckpt, span, result, features, ReportConfig(max_chars=2000, live=True))
    >>> build_report(ckpt, span, result, features, max_chars=2000, live=True)    # the same, as overrides
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class ReportConfig:
    """What a report shows and how it is built; see neuroscope.report for the sections."""

    units: tuple[str, ...] | None = None  # unit ids to colour the text by ("l2.c.323"); None: each feature's
                                          # top n_units of the ranking, or the most variable units without one
    max_chars: int = 5000       # characters shown, and read by the model; a longer text is cut, with a note
    n_units: int = 5            # units per feature in the unit picker
    progress: bool = False      # progress bars on stderr
    live: bool = False          # carry the model's weights and run it in the page (docs/live.md)
    live_force: bool = False    # with live: carry a model above _live.MAX_LIVE_WEIGHTS weights anyway
    match: object = None        # a neuroscope.match result to show as a section (its hits in context), or None
    attribute: int = 1          # units of the first panel given an attribution strip (causes.attribute) at the
                                # character where each is largest; 0: no Attribution section

    def __post_init__(self):
        if self.units is not None:
            if isinstance(self.units, str):
                raise UserError(f"units must be a list of unit ids, got the string {self.units!r}", param="units")
            object.__setattr__(self, "units", tuple(self.units) or None)
        if self.max_chars < 1:
            raise UserError(f"max_chars must be >= 1, got {self.max_chars}", param="max_chars")
        if not (isinstance(self.attribute, int) and 0 <= self.attribute <= 100):
            raise UserError(f"attribute must be a whole number from 0 to 100, got {self.attribute!r}", param="attribute")
        if self.n_units < 1:
            raise UserError(f"n_units must be >= 1, got {self.n_units}", param="n_units")
        if self.live_force and not self.live:      # refused at once, not silently ignored after the work
            raise UserError("live_force means something only with live (a page that runs the model)",
                            param="live_force")
