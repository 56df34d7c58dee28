"""Match: LSTMVis's match view without a server. Take the units that are on inside a span of the text
and off around it, then find every other stretch of the whole text where the same units switch on.

    >>> result = match(ckpt, text, span=(1200, 1260))                  # units="auto"
    >>> result.query          # one row per query unit: its threshold, on-share inside / around the span
    >>> result.hits.head()    # rank, start, end, length, score (mean Jaccard), text, before, after
    >>> result.features       # precision and recall of the hit characters against each binary feature
    >>> match(ckpt, text, "1200:1260", units=["l1.c.0", "-l1.c.12"], threshold=0.95)

A unit's shown value is h, or tanh(c) for a cell state (names.Unit.squash). A unit is *on* at a
character when its value lies above its q-quantile (threshold=q), or, for a unit written "-l1.c.12",
below its (1-q)-quantile. The quantiles come from a 2,000-bin histogram over [-1, 1] of every
candidate unit on the first min(N, threshold_chars) characters of the text.

With a dictionary (`dictionary=`, neuroscope.dictionary) the candidates are its latents instead
("l1.c/d.123"), valued as dictionary.iter_latents encodes them: 0 except at the k latents on per
character, unbounded above. Their thresholds are exact, not binned: a latent is on at a character
when its activation lies above its q-quantile over the first min(N, threshold_chars) characters
(dictionary.latent_quantiles, from its non-zero values) and above 0 in any case. A latent active at
fewer than a (1-q) share of those characters thus has quantile 0 and is on wherever it is active; a
denser one is on in its top (1-q) share. "-" (on when low) is refused for a latent: its low is 0,
where it is not on at all.

The query set Q: the given units, or (units="auto") the units on over at least min_inside of the
span and on at least min_score less often in the `margin` characters each side, best first by
(on-share inside - on-share around), at most top_units. The search then streams the WHOLE text
through the model (record.iter_blocks, with streams and warmup; iter_latents for latents) and keeps
per character only Q's on/off bits (one uint8/16/32 per character) and their count (one uint8):
memory O(N) bytes, never [N x units]. Only Q's bits are kept, so a character's on-set S is a subset
of Q, and its Jaccard |S & Q| / |S | Q| is the share of Q that is on. A hit is a maximal run of
characters with Jaccard >= cut, at least min_length long and not overlapping the span; hits are
ranked by mean Jaccard, ties by how close their length is to the span's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .checkpoint import model_and_vocab
from .config import configured
from .dictionary import as_dictionary, iter_latents, latent_quantiles, latents_of
from .errors import UserError
from .features import FEATURES, builtin_names, one_line, resolve
from .files import json_ready
from .names import DICTIONARY_MARK, Latent, Unit, latent_id, parse_latent, parse_quantity, parse_unit, squashes
from .record import AUTO_WARMUP, iter_blocks, record, recorded_names, stream_layout
from .stats import SHOWN, shown

BINS = 2000                 # histogram bins over [-1, 1]: thresholds to 0.001
MAX_UNITS = 32              # the query's bits fit one uint32 per character
QUERY_COLUMNS = ["unit", "layer", "state", "index", "sign", "threshold", "on_inside", "on_around", "score"]
HIT_COLUMNS = ["rank", "start", "end", "length", "score", "text", "before", "after"]


@dataclass(frozen=True)
class MatchConfig:
    """What match() selects and searches; see the module docstring."""

    units: object = "auto"          # "auto", or unit ids ("l1.c.12"; "-l1.c.12": on when low), a list or "a,b";
                                    # with a dictionary, its latent ids ("l1.c/d.5"), never "-"
    threshold: float = 0.9          # q: a unit is on above its q-quantile (a "-" unit: below its (1-q)-quantile)
    states: tuple = ("h", "c")      # auto: candidate units
    top_units: int = 10             # auto: at most this many units in the query
    margin: int = 10                # auto: characters each side of the span where the units should be off
    min_inside: float = 0.5         # auto: a unit is on over at least this share of the span...
    min_score: float = 0.3          # ...and this much more often than in the margins
    cut: float = 0.6                # a character is in a hit when at least this share of the query is on
    min_length: int | None = None   # shortest hit (None: a quarter of the span's length, at least 1)
    top: int = 50                   # hits listed; the features table scores these and all hits
    context: int = 40               # characters shown each side of a hit
    threshold_chars: int = 100_000  # the quantiles come from the text's first min(N, this) characters
    lead: int = 256                 # characters read before the span's margin when recording the span
    max_span: int = 2000            # longest span accepted
    streams: int | str = "auto"     # recording (record.iter_blocks): parallel pieces of the text ("auto":
                                    # record.auto_streams; 1: one exact stream)...
    warmup: int = AUTO_WARMUP       # ...and the characters each piece after the first reads first
    chunk: int = 4096               # characters per recorded block
    progress: bool = False          # a progress bar over the streaming pass (stderr)


@dataclass
class MatchResult:
    """What match() found.

    query: one row per query unit: unit ("l1.c.12", "-l1.c.12" for a unit on when low, or a latent
        "l1.c/d.5", whose state is "c/d"), layer, state, index, sign (+1 / -1; always +1 for a latent),
        threshold (shown value, or latent activation), on_inside, on_around (share of the span's /
        margins' characters where the unit is on), score (on_inside - on_around).
    hits: the top hits: rank, start, end (positions in the text, end exclusive), length, score
        (mean Jaccard over the hit), text, before, after (context characters).
    features: one row per (built-in binary feature, scope): scope "top" (the listed hits) or "all"
        (every hit), hit_chars, precision (share of hit characters where the feature is 1), recall
        (share of the feature's characters inside hits), base_rate (share of the text), lift.
    meta: the span, the settings, the counts, the thresholds' sample, timings; streams and warmup as
        the search read the text (a number, never "auto"), threshold_streams as the thresholds' pass did;
        candidates ("units" or "latents") and the dictionary's folder (None without one).
    """

    query: pd.DataFrame
    hits: pd.DataFrame
    features: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return json_ready({"query": self.query.to_dict("records"), "hits": self.hits.to_dict("records"),
                           "features": self.features.to_dict("records"), "meta": self.meta})

    def format(self, n: int | None = None) -> str:
        """The text `neuroscope match` prints: the query, the best n hits (None: every listed hit, the
        config's `top`), and the features the top hits' characters fall on. Hit and span texts are
        shown on one line, the hit between ⟦ ⟧, control characters escaped (features.one_line)."""
        m = self.meta
        a, b = m["span"]
        lines = [f"query: {len(self.query)} {m.get('candidates', 'units')} on inside [{a}, {b}) "
                 f"⟦{one_line(m['span_text'])}⟧"]
        lines += [f"  {r.unit:<12} on {r.on_inside:.0%} inside, {r.on_around:.0%} around (threshold {r.threshold:+.3f})"
                  for r in self.query.itertuples()]
        lines.append(f"{m['hits']:,} hits (Jaccard >= {m['cut']}, >= {m['min_length']} chars) in {m['chars']:,} chars"
                     + (f"; the best {min(len(self.hits), n or len(self.hits))}:" if m["hits"] else ""))
        for r in self.hits.head(n).itertuples():
            lines.append(f"  {r.rank:>3} [{r.start}, {r.end}) {r.score:.3f}  {one_line(r.before[-20:])}"
                         f"⟦{one_line(r.text)}⟧{one_line(r.after[:20])}")
        lines.append(self._format_features())
        return "\n".join(lines)

    def _format_features(self) -> str:
        """The five features most precise on the top hits' characters; a feature absent from the text
        has no recall (0 of 0 characters) and is left out, rather than printed as nan."""
        if not self.meta["hits"]:
            return "hit characters vs features: no hits"
        f = self.features
        present = f[(f["scope"] == "top") & f["recall"].notna()]
        if present.empty:
            return "hit characters vs features: none of the built-in binary features occurs in the text"
        top = present.sort_values("precision", ascending=False, kind="stable").head(5)
        return "hit characters vs features (top hits): " + ", ".join(
            f"{r.feature} precision {r.precision:.2f} recall {r.recall:.2f}" for r in top.itertuples())


def parse_span(span, n: int, max_span: int = 2000) -> tuple[int, int]:
    """"1200:1260" or (1200, 1260) -> (a, b), checked to be a non-empty [a, b) inside a text of n chars."""
    try:
        a, b = (int(x) for x in (span.split(":") if isinstance(span, str) else span))
    except (TypeError, ValueError):
        raise UserError(f"span takes START:END (e.g. 1200:1260), got {span!r}", param="span") from None
    if not 0 <= a < b <= n:
        raise UserError(f"span [{a}, {b}) must be non-empty and lie inside the text [0, {n})", param="span")
    if b - a > max_span:
        raise UserError(f"span [{a}, {b}) is {b - a:,} characters long; at most {max_span:,}", param="span")
    return a, b


def parse_units(units, config) -> list[tuple[Unit, int]]:
    """"l1.c.0,-l1.c.12" or a list -> [(Unit, sign)], each checked to exist in the model."""
    out = []
    for item in _items(units):
        sign = -1 if item.startswith("-") else 1
        out.append((parse_unit(item.lstrip("-"), config), sign))
    return _counted(out)


def parse_latents(units, d) -> list[Latent]:
    """"l1.c/d.3,l1.c/d.40" or a list -> [Latent], each checked to be one of dictionary d's. A latent
    is never on when low ("-"): its low is 0, where it is off."""
    items = _items(units)
    low = next((item for item in items if item.startswith("-")), None)
    if low is not None:
        raise UserError(f"{low}: a latent is on when active, never when low (\"-\" is for units); give "
                        f"{low[1:]}", param="units")
    return latents_of(d, _counted([parse_latent(item, d.sae.d_sae) for item in items]))


def _items(units) -> list[str]:
    return [str(u).strip() for u in (units.split(",") if isinstance(units, str) else list(units))]


def _counted(out: list) -> list:
    """The parsed query, refused when empty, too long for the bits or naming one twice."""
    if not out:
        raise UserError("no unit given in units", param="units")
    if len(out) > MAX_UNITS:
        raise UserError(f"{len(out)} units given; at most {MAX_UNITS}", param="units")
    if len(set(out)) < len(out):
        raise UserError("a unit is given twice in units", param="units")
    return out


def quantile_thresholds(net, ids: np.ndarray, names: list[str], q: float, cfg: MatchConfig) -> dict:
    """{quantity name: (low [H], high [H])}: every unit's (1-q)- and q-quantile of its shown value on
    ids, from a BINS-bin histogram over [-1, 1] (shown values never leave it): memory O(units x BINS)."""
    H = net.config.hidden_size
    counts = {name: np.zeros(H * BINS, np.int64) for name in names}
    offset = torch.arange(H) * BINS
    states = sorted({parse_quantity(n).state for n in names})
    for pos, values in iter_blocks(net, ids, states, cfg.chunk, False, cfg.streams, cfg.warmup):
        keep = torch.from_numpy(np.flatnonzero(pos.reshape(-1) >= 0))
        for name in names:
            v = shown(values[name].view(-1, H)[keep], squashes(name), inplace=True)   # [keep] made a copy
            b = ((v + 1) * (BINS / 2)).long().clamp_(0, BINS - 1) + offset
            counts[name] += torch.bincount(b.view(-1), minlength=H * BINS).numpy()
    out = {}
    for name, c in counts.items():
        cum = c.reshape(H, BINS).cumsum(1)
        n = cum[:, -1:]
        hi = (cum < q * n).sum(1) + 1                  # the first bin whose cumulative count reaches q
        lo = (cum < (1 - q) * n).sum(1)
        out[name] = (-1 + lo * 2 / BINS, -1 + hi * 2 / BINS)
    return out


def _unit_candidates(net, ids: np.ndarray, thresholds: dict, cfg: MatchConfig):
    """Per quantity and sign: (the candidate rows, on bool [len(ids), H]) over ids, recorded exactly."""
    names = list(thresholds)
    values = record(net, ids, sorted({parse_quantity(n).state for n in names}), chunk=cfg.chunk)
    for name in names:
        v = shown(values[name], squashes(name))
        q, (low, high), H = parse_quantity(name), thresholds[name], v.shape[1]
        for sign, on, thr in ((1, v > high, high), (-1, v < low, low)):
            rows = pd.DataFrame({"unit": [("-" if sign < 0 else "") + q.unit(i).id for i in range(H)],
                                 "layer": q.layer, "state": q.state, "index": np.arange(H), "sign": sign,
                                 "threshold": thr})
            yield rows, on


def _latent_candidates(d, net, ids: np.ndarray, thresholds: np.ndarray, cfg: MatchConfig):
    """(every latent's rows, on bool [len(ids), d_sae]) over ids, recorded exactly and encoded: on above
    its quantile, so never where it is 0."""
    q = parse_quantity(d.quantity)
    z = d.latents(torch.from_numpy(record(net, ids, (q.state,), chunk=cfg.chunk)[d.quantity])).cpu().numpy()
    n = d.sae.d_sae
    rows = pd.DataFrame({"unit": [latent_id(d.quantity, i) for i in range(n)], "layer": q.layer,
                         "state": q.state + DICTIONARY_MARK, "index": np.arange(n), "sign": 1, "threshold": thresholds})
    yield rows, z > thresholds


def select_units(net, ids: np.ndarray, span: tuple[int, int], thresholds, cfg: MatchConfig,
                 wanted: list[str] | None = None, dictionary=None) -> pd.DataFrame:
    """The query table (QUERY_COLUMNS): the `wanted` ids, or (None) the best auto candidates, units or
    (with a dictionary) its latents; recorded exactly from `lead` characters before the span's left
    margin to the end of its right margin."""
    a, b = span
    lo, hi = max(0, a - cfg.margin - cfg.lead), min(len(ids), b + cfg.margin)
    inside = np.arange(a, b) - lo
    around = np.r_[max(0, a - cfg.margin):a, b:hi] - lo
    candidates = (_unit_candidates(net, ids[lo:hi], thresholds, cfg) if dictionary is None
                  else _latent_candidates(dictionary, net, ids[lo:hi], thresholds, cfg))
    parts = []
    for rows, on in candidates:
        f_in = on[inside].mean(0)
        f_out = on[around].mean(0) if len(around) else np.zeros_like(f_in)
        parts.append(rows.assign(on_inside=f_in, on_around=f_out, score=f_in - f_out))
    table = pd.concat(parts, ignore_index=True)[QUERY_COLUMNS]
    if wanted is not None:
        return table.set_index("unit").loc[wanted].reset_index()[QUERY_COLUMNS]
    good = table[(table["on_inside"] >= cfg.min_inside) & (table["score"] >= cfg.min_score)]
    if good.empty:
        what = "unit" if dictionary is None else "latent"
        raise UserError(f"no {what} is on inside span [{a}, {b}) and off around it (threshold {cfg.threshold}: on "
                        f"over >= {cfg.min_inside:.0%} of it and {cfg.min_score:.0%} more than in the {cfg.margin} "
                        f"characters each side); try a span that covers one construct, or give the {what}s",
                        param="span")
    return good.sort_values(["score", "on_inside"], ascending=False, kind="stable").head(cfg.top_units).reset_index(
        drop=True)


def search_bits(net, ids: np.ndarray, query: pd.DataFrame, cfg: MatchConfig) -> tuple[np.ndarray, np.ndarray]:
    """One streaming pass over ids: (bits, count) per character, bits: query unit k on -> bit k
    (uint8/16/32 by the query's size), count: how many query units are on (uint8). Memory O(N) bytes."""
    bits, count = _bit_arrays(len(ids), len(query))
    groups = []            # per quantity: (name, unit indices, raw thresholds, signs, bit values)
    for (layer, state), g in query.groupby(["layer", "state"], sort=False):
        thr = g["threshold"].to_numpy(np.float64)
        if squashes(state):                 # compare raw c with atanh(threshold): no tanh per character
            thr = np.arctanh(np.clip(thr, -1 + 1e-7, 1 - 1e-7))
        groups.append((Unit(int(layer), state, 0).quantity, torch.tensor(g["index"].to_numpy(np.int64)),
                       torch.tensor(thr, dtype=torch.float32), torch.tensor(g["sign"].to_numpy(np.float32)),
                       torch.tensor(1 << g.index.to_numpy(np.int64))))
    states = sorted({s for s in query["state"]})
    for pos, values in iter_blocks(net, ids, states, cfg.chunk, cfg.progress, cfg.streams, cfg.warmup):
        code = torch.zeros(pos.shape, dtype=torch.int64)
        n_on = torch.zeros(pos.shape, dtype=torch.int64)
        for name, idx, thr, sign, bit in groups:
            on = (values[name].index_select(2, idx) - thr) * sign > 0          # [T, B, k]
            code += (on.long() * bit).sum(2)
            n_on += on.sum(2)
        flat = pos.reshape(-1)
        keep = flat >= 0
        bits[flat[keep]] = code.view(-1).numpy()[keep]
        count[flat[keep]] = n_on.view(-1).numpy()[keep]
    return bits, count


def latent_bits(d, net, ids: np.ndarray, query: pd.DataFrame, cfg: MatchConfig) -> tuple[np.ndarray, np.ndarray]:
    """search_bits for latents of dictionary d: one pass of dictionary.iter_latents over ids, query latent
    k on (above its threshold) -> bit k. Memory O(N) bytes, and one block's latents at a time."""
    bits, count = _bit_arrays(len(ids), len(query))
    cols, thr = query["index"].to_numpy(np.int64), query["threshold"].to_numpy(np.float32)
    weight = np.left_shift(1, np.arange(len(query), dtype=np.int64))
    for start, z in iter_latents(d, net, ids, cfg.streams, cfg.warmup, cfg.progress):
        on = z[:, cols] > thr                                                  # [n, K]
        bits[start:start + len(on)] = on @ weight
        count[start:start + len(on)] = on.sum(1)
    return bits, count


def _bit_arrays(n: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(bits, count) for n characters, all off: bits the smallest unsigned integer with K bits."""
    dtype = np.uint8 if K <= 8 else np.uint16 if K <= 16 else np.uint32
    return np.zeros(n, dtype), np.zeros(n, np.uint8)


def find_hits(count: np.ndarray, K: int, span: tuple[int, int], cut: float, min_length: int) -> pd.DataFrame:
    """Every hit: a maximal run of characters where count / K >= cut, at least min_length long, not
    overlapping span; columns start, end, length, score (mean Jaccard), best first (score, then length
    closeness to the span's, then position)."""
    need = int(np.ceil(cut * K - 1e-9))
    edges = np.diff((count >= need).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    a, b = span
    keep = (ends - starts >= min_length) & ~((starts < b) & (ends > a))
    starts, ends = starts[keep], ends[keep]
    if len(starts):
        sums = np.add.reduceat(np.append(count, np.uint8(0)), np.column_stack([starts, ends]).ravel(),
                               dtype=np.int64)[::2]
    else:
        sums = np.zeros(0, np.int64)
    length = ends - starts
    score = sums / (length * K) if len(starts) else np.zeros(0)
    order = np.lexsort((starts, np.abs(length - (b - a)), -score))
    return pd.DataFrame({"start": starts[order], "end": ends[order], "length": length[order],
                         "score": score[order]})


def _mask(n: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """bool [n]: True on the disjoint runs [starts, ends)."""
    edge = np.zeros(n + 1, np.int8)
    edge[starts] += 1
    edge[ends] -= 1
    return np.cumsum(edge[:-1], dtype=np.int8).astype(bool)


def feature_overlap(text: str, hits: pd.DataFrame, top: int, lang: str = "auto") -> pd.DataFrame:
    """Precision and recall of the hit characters (the top hits and all hits) against every built-in
    binary feature of text; one row per (feature, scope)."""
    names = [n for n in builtin_names() if FEATURES[n].kind == "binary"]
    labels = resolve(text, names=names, lang=lang)
    scopes = {"top": hits.head(top), "all": hits}
    masks = {s: _mask(len(text), h["start"].to_numpy(), h["end"].to_numpy()) for s, h in scopes.items()}
    rows = []
    for name in names:
        lab = labels.pop(name).astype(bool)
        total = int(lab.sum())
        for scope, m in masks.items():
            n_hit, both = int(m.sum()), int(np.count_nonzero(lab & m))
            precision = both / n_hit if n_hit else np.nan
            base = total / len(text)
            rows.append({"feature": name, "scope": scope, "hit_chars": n_hit, "precision": precision,
                         "recall": both / total if total else np.nan, "base_rate": base,
                         "lift": precision / base if base else np.nan})
    return pd.DataFrame(rows)


def _hit_table(text: str, hits: pd.DataFrame, top: int, context: int) -> pd.DataFrame:
    h = hits.head(top).reset_index(drop=True)
    h.insert(0, "rank", np.arange(1, len(h) + 1))
    h["text"] = [text[s:e] for s, e in zip(h["start"], h["end"])]
    h["before"] = [text[max(0, s - context):s] for s in h["start"]]
    h["after"] = [text[e:e + context] for e in h["end"]]
    return h[HIT_COLUMNS]


def match(model, text: str, span, config: MatchConfig | None = None, *, vocab=None, dictionary=None,
          **overrides) -> MatchResult:
    """Find where else in text the units that are on inside span switch on together.

    model: a Checkpoint (model + vocab) or a CharRNN with `vocab` given. text: str, N characters.
    span: (a, b) or "a:b", positions in text, end exclusive. config / overrides: MatchConfig fields
    (e.g. units=["l1.c.0"], threshold=0.95, streams=16, warmup=256). dictionary: a
    neuroscope.dictionary.Dictionary (or its folder) trained on this model: its latents ("l1.c/d.5")
    are the candidates instead of the units (see the module docstring for their thresholds).
    Raises UserError (before any recording) for a span outside the text, empty or longer than max_span,
    an unknown unit or latent, a "-" latent, a threshold or cut outside (0, 1), a dictionary of another
    model; and when no unit (latent) is on inside the span.
    """
    t0 = time.perf_counter()
    cfg = configured(MatchConfig, config, overrides)
    net, vocab = model_and_vocab(model, vocab)
    _check(cfg)
    a, b = parse_span(span, len(text), cfg.max_span)
    streams, _, warmup = stream_layout(len(text), cfg.streams, cfg.warmup)     # refused here, before any pass
    d = as_dictionary(dictionary, net)
    wanted = _wanted(cfg, net.config, d)
    what = "units" if d is None else "latents"
    ids = vocab.encode(text)
    n_thr = min(len(text), cfg.threshold_chars)
    seconds = {}
    query = select_units(net, ids, (a, b), _thresholds(net, ids[:n_thr], cfg, wanted, d), cfg, wanted, d)
    if wanted is not None and not (query["on_inside"] > 0).any():
        raise UserError(f"no {what[:-1]} is on inside span [{a}, {b}): none of the given {what} passes its "
                        f"threshold {cfg.threshold} there", param="span")
    seconds["query"] = time.perf_counter() - t0
    bits, count = search_bits(net, ids, query, cfg) if d is None else latent_bits(d, net, ids, query, cfg)
    seconds["search"] = time.perf_counter() - t0 - seconds["query"]
    min_length = cfg.min_length if cfg.min_length is not None else max(1, (b - a) // 4)
    hits = find_hits(count, len(query), (a, b), cfg.cut, min_length)
    features = feature_overlap(text, hits, cfg.top)
    seconds["total"] = time.perf_counter() - t0
    how = "2,000-bin histogram" if d is None else "exact quantiles of each latent; on means > 0 at least"
    meta = {"chars": len(text), "span": [a, b], "span_text": text[a:b], "units": "auto" if wanted is None else "given",
            "candidates": what, "dictionary": str(d.path) if d is not None and d.path else None,
            "threshold": cfg.threshold, "thresholds_from": f"the first {n_thr:,} characters ({how})",
            "value": SHOWN if d is None else f"the activation of latents over {d.quantity} ({SHOWN})",
            "cut": cfg.cut, "min_length": min_length,
            "hits": len(hits), "hit_chars": int(hits["length"].sum()), "top": cfg.top,
            "on_chars": int(np.count_nonzero(count)), "bits_dtype": str(bits.dtype),
            "jaccard": f"share of the query {what} on (the on-set is taken over the query {what} only)",
            "streams": streams, "warmup": warmup, "threshold_streams": stream_layout(n_thr, cfg.streams, cfg.warmup)[0],
            "seconds": seconds}
    return MatchResult(query, _hit_table(text, hits, cfg.top, cfg.context), features, meta)


def _wanted(cfg: MatchConfig, model_config, d) -> list[str] | None:
    """The query ids asked for, parsed and checked ("-l1.c.12" for a unit on when low), or None for auto."""
    if cfg.units == "auto":
        return None
    if d is not None:
        return [latent.id for latent in parse_latents(cfg.units, d)]
    return [("-" if sign < 0 else "") + u.id for u, sign in parse_units(cfg.units, model_config)]


def _thresholds(net, ids: np.ndarray, cfg: MatchConfig, wanted: list[str] | None, d):
    """Every candidate's thresholds over ids: {quantity: (low [H], high [H])} for units (the wanted
    units' quantities, or every one of cfg.states), float32 [d_sae] for the latents of d."""
    if d is not None:
        return latent_quantiles(d, net, ids, cfg.threshold, streams=cfg.streams, warmup=cfg.warmup)
    names = (recorded_names(net.config, cfg.states) if wanted is None
             else list(dict.fromkeys(parse_unit(u.lstrip("-")).quantity for u in wanted)))
    return quantile_thresholds(net, ids, names, cfg.threshold, cfg)


def _check(cfg: MatchConfig) -> None:
    """Settings a user gives, checked before any recording."""
    if not 0 < cfg.threshold < 1:
        raise UserError(f"threshold must lie in (0, 1), got {cfg.threshold}", param="threshold")
    if not 0 < cfg.cut <= 1:
        raise UserError(f"cut must lie in (0, 1], got {cfg.cut}", param="cut")
    for name, lo, hi in (("top", 1, None), ("top_units", 1, MAX_UNITS), ("margin", 0, None), ("context", 0, None),
                         ("threshold_chars", 1, None)):
        v = getattr(cfg, name)
        if v < lo or (hi is not None and v > hi):
            raise UserError(f"{name} must be >= {lo}" + (f" and <= {hi}" if hi else "") + f", got {v}", param=name)


from . import callable_module  # noqa: E402 (ns.match(...) is match())

callable_module(__name__)
