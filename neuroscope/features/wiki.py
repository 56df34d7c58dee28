"""Wiki and web markup labellers: URLs, [[links]] and {{templates}}.

    >>> label("see [[a|b]] {{c}}", "in_wikilink")   # uint8 [17], 1 from the second [ to the first ]

Written for MediaWiki XML dumps (enwiki.xml), whose wiki text is XML-escaped.
"""
from __future__ import annotations

import re

import numpy as np

from .registry import builtin
from .scan import Scan, fill, inside, pairs, ranges_to_mask, reflected_depth


_SCHEME = re.compile(r"(?:https?|ftp)\Z")
_URL_BODY = re.compile(r"""(?:[^\s<>"'\[\]{}|\\^`&]|&(?!(?:quot|lt|gt|nbsp|apos|\#34|\#39);))*""")
_URL_TRAILING = ".,;:!?*"


@builtin("in_url", "binary",
          "characters of a URL starting http:// https:// ftp:// or www., trailing punctuation excluded")
def _in_url(sc: Scan) -> np.ndarray:
    """Every character of a URL, from the first letter of its scheme (http, https, ftp, lower
    case) or of a `www.` that does not follow a letter, digit, _ . - or /, to its last character.
    A URL runs until whitespace, one of < > " ' [ ] { } | \\ ^ ` or one of the entities &quot;
    &lt; &gt; &nbsp; &apos; (`&amp;` stays in); then trailing . , ; : ! ? * are dropped, and a
    trailing `)` when the URL holds more `)` than `(`. A URL inside a URL is part of it.
    """
    text = sc.text
    cands = sorted([(m.start(), 3) for m in re.finditer("://", text)]
                   + [(m.start(), 4) for m in re.finditer(r"www\.", text)])
    starts, ends, last_end = [], [], -1
    for p, width in cands:
        if width == 3:
            scheme = _SCHEME.search(text, max(0, p - 5), p)
            if scheme is None:
                continue
            start = scheme.start()
        else:
            if p > 0 and (text[p - 1].isalnum() or text[p - 1] in "_.-/"):
                continue
            start = p
        if start < last_end:
            continue
        body = p + width
        end = _URL_BODY.match(text, body).end()
        while end > body and (text[end - 1] in _URL_TRAILING
                              or (text[end - 1] == ")" and text.count(")", start, end) > text.count("(", start, end))):
            end -= 1
        if end > body:
            starts.append(start)
            ends.append(end)
            last_end = end
    return ranges_to_mask(sc.n, starts, ends)


_WIKI_VERBATIM = re.compile(r"(?:<|&lt;)(math|nowiki)\b[\s\S]*?(?:<|&lt;)/\1(?:>|&gt;)")


def _doubled_depth(sc: Scan, open_ch: str, close_ch: str) -> np.ndarray:
    """Nesting depth of `[[`..`]]`-style markup, changing at the second character of each pair.

    Pairs inside <math>...</math> and <nowiki>...</nowiki> (raw or as &lt;...&gt; entities) do not
    count: TeX braces are not templates. The depth returns to 0 at every raw `<`: in a MediaWiki
    XML dump the wiki text is escaped, so a raw `<` starts an XML tag and the element's markup is
    over (an edit summary cut off inside `[[` must not run into the next page). Measured on
    enwiki.xml: with both rules no template or link is open at any raw `<`; without them, links
    are open at 2,854 tags (70% of the text would be "in a link").
    """
    o, c = pairs(sc.pos(open_ch)), pairs(sc.pos(close_ch))
    if "math" in sc.text or "nowiki" in sc.text:
        verbatim = np.array([m.span() for m in _WIKI_VERBATIM.finditer(sc.text)], np.int64).reshape(-1, 2)
        if verbatim.size:
            o, c = (p[~inside(verbatim, p)] for p in (o, c))
    resets = sc.pos("<")
    pos = np.concatenate((o, c, resets))
    steps = np.concatenate((np.ones(o.size, np.int64), -np.ones(c.size, np.int64),
                            np.zeros(resets.size, np.int64)))
    order = np.argsort(pos, kind="stable")
    pos, steps = pos[order], steps[order]
    return fill(sc.n, pos, reflected_depth(steps, resets=steps == 0), np.int32)


@builtin("in_wikilink", "binary", "inside [[...]] wiki links: on from the second [ to the first ] of ]]")
def _in_wikilink(sc: Scan) -> np.ndarray:
    """1 while a `[[` is open (nested links count): from the second `[` through the first `]` of
    the `]]` that closes the outermost link. Doubled brackets pair left to right (`[[[` is one
    `[[` and a `[`); an unmatched `]]` is ignored."""
    return _doubled_depth(sc, "[", "]") > 0


@builtin("in_template", "binary", "inside {{...}} wiki templates (any nesting depth): on from the second {")
def _in_template(sc: Scan) -> np.ndarray:
    """1 while template_depth > 0: from the second `{` of `{{` through the first `}` of the `}}`
    that closes the outermost template."""
    return _doubled_depth(sc, "{", "}") > 0


@builtin("template_depth", "count", "nesting depth of {{...}} wiki templates, changing at the second { or }")
def _template_depth(sc: Scan) -> np.ndarray:
    """Opened `{{` minus closed `}}` after reading each character, never negative; pairs as in
    in_template (so the parameter `{{{1}}}` counts one level)."""
    return _doubled_depth(sc, "{", "}")

