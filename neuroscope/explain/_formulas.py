"""Formulas over boolean atoms, searched by IoU with a mask (Mu & Andreas 2020), counted per group.

    >>> beams = beam_search(H, n, At, beam=8, max_length=3)    # per mask: [Formula, ...], best first
    >>> beams[0][0].text(names), beams[0][0].iou
    ('in_quote AND NOT is_space', 0.86)

Characters are counted per group of characters that share their row of atoms (atoms.signatures),
so the inputs are small: H float32 [M, G] (characters of each group where each of M masks is on),
n float32 [G] (characters per group), At float32 [G, A] (0/1: the atoms of each group). A formula
is a leading atom (or NOT atom) extended left to right by AND, OR or AND NOT and another atom;
a step of the beam search scores every extension of every kept formula of every mask with two
[formulas, G] @ [G, A] products. It imports nothing of neuroscope's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPS = ("AND", "OR", "AND NOT")
LENGTH_COST = 0.005     # IoU an extra atom must buy to rank above the shorter formula (else it fits noise)


@dataclass(frozen=True)
class Formula:
    """A formula over atoms, left to right: terms ((None or "NOT", a0), (op, a1), ...) = ((a0 op a1) op a2)."""

    terms: tuple[tuple[str | None, int], ...]
    on: np.ndarray          # bool [G]: the groups where it holds
    iou: float              # on the fitting part
    key: tuple[int, int]    # (|formula and mask|, |formula|): two formulas with the same key score the same

    def text(self, names: list[str]) -> str:
        op0, a0 = self.terms[0]
        out = f"NOT {names[a0]}" if op0 else names[a0]
        for i, (op, a) in enumerate(self.terms[1:]):
            out = f"({out}) {op} {names[a]}" if i else f"{out} {op} {names[a]}"
        return out

    def atoms(self) -> list[int]:
        return list(dict.fromkeys(a for _, a in self.terms))


def iou(inter, size, total):
    return inter / np.maximum(size + total - inter, 1e-9)


def leaf_iou(H: np.ndarray, n: np.ndarray, At: np.ndarray) -> tuple[np.ndarray, list]:
    """Fitting IoU [M, 2A] of every atom and every negated atom with every mask, and their leading terms.

    A leading NOT lets the search say "off where X" in one atom: a unit on for 65% of the text is
    best described, at sign -1, by the rarer state."""
    A = At.shape[1]
    total, inter, size = H.sum(1)[:, None], H @ At, (n @ At)[None]
    scores = np.concatenate([iou(inter, size, total), iou(total - inter, n.sum() - size, total)], axis=1)
    return scores, [(None, a) for a in range(A)] + [("NOT", a) for a in range(A)]


def _key(j: int, inter: np.ndarray, total: float, size: np.ndarray, n: np.ndarray) -> tuple[int, int]:
    """(|leaf and mask|, |leaf|) of leaf j of leaf_iou."""
    A = len(size)
    return (int(inter[j]), int(size[j])) if j < A else (int(total - inter[j - A]), int(n.sum() - size[j - A]))


def _apply(on: np.ndarray, op: str, atom: np.ndarray) -> np.ndarray:
    return on & atom if op == "AND" else on | atom if op == "OR" else on & ~atom


def beam_search(H: np.ndarray, n: np.ndarray, At: np.ndarray, beam: int, max_length: int) -> list[list[Formula]]:
    """The best formulas for each mask, by fitting IoU, best first (an empty list for an empty mask).

    H: float32 [M, G] characters of each group where each mask is on; n: float32 [G] characters per
    group; At: float32 [G, A] 0/1, the atoms of each group. Formulas rank by IoU less LENGTH_COST per
    atom after the first; ties go to the shorter formula.
    """
    M = H.shape[0]
    Ab = At > 0
    total = H.sum(1)                                                          # [M]
    inter1, size1 = H @ At, n @ At                                            # [M, A], [A]
    iou1, first = leaf_iou(H, n, At)                                          # [M, 2A]: atoms, then NOT atoms
    beams = []
    for m in range(M):
        top = np.argsort(-iou1[m], kind="stable")[:beam] if total[m] > 0 else []
        beams.append([Formula((first[j],), Ab[:, first[j][1]] ^ (first[j][0] == "NOT"), float(iou1[m, j]),
                              _key(j, inter1[m], total[m], size1, n)) for j in top if iou1[m, j] > 0])
    for _ in range(max_length - 1):
        live = [m for m in range(M) if beams[m]]
        if not live:
            break
        owner = np.concatenate([[m] * len(beams[m]) for m in live])          # [K]: the mask of each row
        F = np.stack([f.on for m in live for f in beams[m]]).astype(np.float32)   # [K, G]
        FH = F * H[owner]
        X, Y = FH @ At, (F * n) @ At                                          # [K, A]: |f&a&on|, |f&a|
        FM, Fn = FH.sum(1)[:, None], (F @ n)[:, None]
        inter = np.stack([X, FM + inter1[owner] - X, FM - X])                 # [3, K, A] for AND, OR, AND NOT
        size = np.stack([Y, Fn + size1[None] - Y, Fn - Y])
        scores = iou(inter, size, total[owner][None, :, None])
        k0 = 0
        for m in live:
            k1 = k0 + len(beams[m])
            beams[m] = _next_beam(beams[m], scores[:, k0:k1], inter[:, k0:k1], size[:, k0:k1], Ab, beam)
            k0 = k1
    return beams


def _next_beam(old: list[Formula], scores, inter, size, Ab, beam: int) -> list[Formula]:
    """The best `beam` distinct formulas among the old beam and its extensions ([3, b, A] each)."""
    for b, f in enumerate(old):
        scores[:, b, f.atoms()] = -1                                          # an atom twice adds nothing
    flat = scores.ravel()
    best = np.argsort(-flat, kind="stable")[:4 * beam]
    # ties (the same characters, e.g. "a AND NOT b" and "NOT b AND a"): shorter, then a positive first atom
    pool = [(f.iou, len(f.terms), f.terms[0][0] == "NOT", f.key, f, None) for f in old]
    for idx in best:
        if flat[idx] <= 0:
            break
        o, b, a = np.unravel_index(idx, scores.shape)
        pool.append((float(flat[idx]), len(old[b].terms) + 1, old[b].terms[0][0] == "NOT",
                     (int(inter[o, b, a]), int(size[o, b, a])), None, (OPS[o], b, int(a))))
    pool.sort(key=lambda t: (-(t[0] - LENGTH_COST * (t[1] - 1)), t[1], t[2]))
    out, seen = [], set()
    for score, _, _, key, f, ext in pool:
        if key in seen:
            continue
        seen.add(key)
        if f is None:
            op, b, a = ext
            f = Formula(old[b].terms + ((op, a),), _apply(old[b].on, op, Ab[:, a]), score, key)
        out.append(f)
        if len(out) == beam:
            break
    return out


def simulation_r(atom_ids: list[int], At: np.ndarray, n_fit, n_ho, S_fit, S_ho, sum2_ho: float) -> float:
    """Pearson r on the held-out part between the unit and its prediction from the atoms alone: the
    unit's fitting-part mean in each cell (truth combination) of the atoms. All inputs per group:
    At [G, A] 0/1, n_fit/n_ho [G] characters, S_fit/S_ho [G] sums of the unit; sum2_ho: sum of v^2."""
    cell = (At[:, atom_ids] @ (2 ** np.arange(len(atom_ids)))).astype(np.int64)   # [G]
    n_fit, n_ho = n_fit.astype(np.float64), n_ho.astype(np.float64)
    cnt = np.bincount(cell, n_fit, 2 ** len(atom_ids))
    tot = np.bincount(cell, S_fit, 2 ** len(atom_ids))
    mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), S_fit.sum() / n_fit.sum())
    p = mean[cell]                                                                 # [G]: the prediction
    if np.ptp(p[n_ho > 0]) == 0:
        return 0.0
    N, sp, sv = n_ho.sum(), p @ n_ho, S_ho.sum()
    cov = N * (p @ S_ho) - sp * sv
    var_p, var_v = N * ((p * p) @ n_ho) - sp ** 2, N * sum2_ho - sv ** 2
    return float(cov / np.sqrt(var_p * var_v)) if var_p > 0 and var_v > 0 else 0.0


def chance_iou(p_formula, p_mask):
    """The IoU a formula independent of the mask would have, from the two coverages (0..1)."""
    both = p_formula * p_mask
    return both / np.maximum(p_formula + p_mask - both, 1e-12)


def holds(formula: str, atom_values: dict[str, np.ndarray]) -> np.ndarray:
    """Where a formula as Formula.text writes it holds: bool [N]. atom_values: {name: bool [N]}, as
    explain.atoms(text) gives. Formulas are left-deep, so reading the tokens left to right (the
    parentheses dropped) applies the operators in the formula's order."""
    tokens = formula.replace("(", " ").replace(")", " ").split()
    def atom(i: int) -> tuple[np.ndarray, int]:
        negate = tokens[i] == "NOT"
        name = tokens[i + negate]
        if name not in atom_values:
            raise KeyError(f"{name} is not an atom of this text")
        v = atom_values[name].astype(bool)
        return (~v if negate else v), i + 1 + negate
    on, i = atom(0)
    while i < len(tokens):
        op, i = tokens[i], i + 1
        if op == "AND" and tokens[i] == "NOT":
            op, i = "AND NOT", i + 1
        a, i = atom(i)
        on = _apply(on, op, a)
    return on
