"""Compositional explanations of units (Mu & Andreas 2020), scored by how well they predict the unit.

    >>> table = explain_values(values, text, ["l2.c.328"])        # values float [N, U]: h, tanh(c)
    >>> table[table["rank"] == 1][["unit", "formula", "iou_heldout", "simulation_r", "explained"]]

What is computed, per unit, on text of N characters (row k = the unit after reading text[k]):
1. split (explain._split): the text in blocks of 2,000 characters; of every three, two are the
   fitting part and one the held-out part, so both parts sample the whole text. Everything chosen
   (threshold, formula, cell means) is chosen on the fitting part alone.
2. masks: the unit is "on" where sign * value > the q-quantile of sign * value on the fitting part,
   for each sign (+1, -1) and each q in QUANTILES (0.5 ... 0.99, so a unit on for 30% of the text
   can be matched as well as a sparse one).
3. search: formulas over the atoms of explain._atoms with AND, OR and AND NOT, up to MAX_LENGTH
   atoms, by beam search (BEAM formulas kept per step), scored by IoU with the mask on the fitting
   part: |formula and on| / |formula or on|. Of every formula kept for any mask, the one with the
   largest (fitting IoU beyond chance) x (simulation r on the fitting part) gives the unit its
   (sign, quantile); that mask's best TOP formulas by the same score are reported.
4. held-out: each formula's IoU on the held-out part, with the same threshold value, beside the
   best single atom's, and how many held-out characters the unit is on (on_heldout) and the formula
   holds on (formula_heldout): where either is 0, the held-out scores say nothing (untested).
5. simulation: the formula's atoms (at most 3) cut the characters into at most 8 cells; the unit's
   mean in each cell on the fitting part predicts its value, and simulation_r is the Pearson r of
   that prediction with the real values on the held-out part (0 where the prediction is constant).
   A unit is explained when simulation_r >= EXPLAINED_R and the best formula's held-out IoU >=
   EXPLAINED_IOU.

Speed: every formula over atoms is constant within a group of characters that share their row of
atoms (atoms.signatures: a few thousand groups on 300k characters), so the search counts per group,
never per character: one bincount per batch of units makes the mask counts, and a step of the beam
search is one [masks x beam, groups] @ [groups, atoms] product per unit.
"""
from .. import callable_module
from ._atoms import atoms
from ._contexts import one_line, top_contexts, unit_contexts
from ._explain import (EXPLAINED_IOU, EXPLAINED_R, ExplainConfig, ExplainResult, check_latents, check_units, explain,
                       explain_values, on_where, split_words, untested)
from ._formulas import holds
from ._split import Split, split

__all__ = ["EXPLAINED_IOU", "EXPLAINED_R", "ExplainConfig", "ExplainResult", "Split", "atoms", "check_latents",
           "check_units", "explain", "explain_values", "holds", "on_where", "one_line", "split", "split_words",
           "top_contexts", "unit_contexts", "untested"]

callable_module(__name__)
