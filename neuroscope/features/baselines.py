"""The char-class baselines: cheap classes of the character itself (is_space, is_upper, ...).

Every ranking is compared against them: a "quote neuron" that is really a `"` detector shows up
as is_quote_char.
"""
from __future__ import annotations

import unicodedata
from typing import Callable

from .registry import builtin


_QUOTE_CHARS = "\"'\u2018\u2019\u201c\u201d\u00ab\u00bb\u201e\u201a"


def _char_class(name: str, description: str, pred: Callable[[str], bool]) -> None:
    builtin(name, "binary", description, baseline=True)(lambda sc: sc.where_char(pred))


_char_class("is_space", "whitespace other than \\n (space, tab, \\r, other Unicode spaces)",
            lambda c: c.isspace() and c != "\n")
_char_class("is_newline", "the line end \\n", lambda c: c == "\n")
_char_class("is_upper", "an upper-case letter (str.isupper)", str.isupper)
_char_class("is_lower", "a lower-case letter (str.islower)", str.islower)
_char_class("is_alpha", "a letter (str.isalpha)", str.isalpha)
_char_class("is_digit", "an ASCII digit 0-9", lambda c: "0" <= c <= "9")
_char_class("is_punct", "punctuation or symbol (Unicode category P* or S*)",
            lambda c: unicodedata.category(c)[0] in "PS")
_char_class("is_quote_char", "a quote mark: \" ' ‘ ’ “ ” « » „ ‚", lambda c: c in _QUOTE_CHARS)
_char_class("is_bracket", "one of ( ) [ ] { }", lambda c: c in "()[]{}")

