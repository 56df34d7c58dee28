"""Per-character labels of real text: what a neuron might be tracking.

    >>> label('say "hi" (x)', "in_quote")                 # uint8 [12], one label per character
    array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=uint8)
    >>> label("a(b(c)))", "paren_depth")                   # int32 [8], never negative
    array([0, 1, 1, 2, 2, 1, 0, 0], dtype=int32)
    >>> feats = resolve(text, names=["in_quote"], regexes=["digits=[0-9]+"])   # {name: array}

Alignment rule, the same for every delimited construct (quotes, literals, comments, [[links]],
{{templates}}, brackets, if-conditions): label[k] says whether the construct is open *after
reading text[k]*, which is how recorded states are aligned (row k = state after reading
character k). So an opening delimiter is on from its last character, and a closing delimiter is
on up to, not including, its last character: `"hi"` -> 1 1 1 0; `[[a]]` -> 0 1 1 1 0;
`/*x*/` -> 0 1 1 1 0; `(a)` -> depth 1 1 0. Spans without delimiters (URLs, regex matches,
hand-marked spans) are 1 on exactly their characters. Labels start fresh at the first character
of the text they are given (outside every construct). Only "\\n" ends a line; the "\\r" of a
CRLF is the last character of its line.

Code-aware features (in_string, in_comment, in_if_condition and the four *_depth) depend on the
text's language: "c" (C-like: // and /* */ comments, "..." and '...' literals), "python"
(# comments; '...', "...", '''...''' and \"\"\"...\"\"\" literals with any r/b/u/f prefix) or
"prose" (no code: literals, comments and if-conditions are all 0, every bracket counts).
`lang="auto"` sniffs it (sniff_language).

The package, bottom up: scan (the positions a text's labels change at, shared by all labellers),
patterns (user regexes, run with a time limit and a size bound), registry (Feature, FEATURES,
label, resolve, register, kind_of), the labellers (prose, wiki, layout, code, baselines), show
(summaries and marks under the text). It imports nothing of
neuroscope's but its error type and, for `python -m neuroscope.features.docs`, the file writer.
"""
from __future__ import annotations

from .registry import (FEATURES, KINDS, NAME_RE, Feature, baseline_names, builtin_names, kind_of, label,
                       register, resolve)
from .scan import LANGS, sniff_language

# Importing the labellers registers the built-ins; the order here is the order they are listed
# (`neuroscope features`) and labelled (all_features=True) in.
from . import prose, wiki, layout, code, baselines
from .show import one_line, printable, render, summarize

__all__ = ["FEATURES", "KINDS", "LANGS", "NAME_RE", "Feature", "baseline_names", "builtin_names", "kind_of",
           "label", "one_line", "printable", "register", "render", "resolve", "sniff_language", "summarize"]
