"""docs/features.md's table of features is the registry's: it cannot drift from the code."""
from pathlib import Path

import numpy as np

from neuroscope import features as F
from neuroscope.features import docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "features.md"


def test_features_doc_table_equals_the_registry():
    text = DOC.read_text(encoding="utf-8")
    assert docs.with_table(text) == text, "docs/features.md is out of date: run python -m neuroscope.features.docs"


def test_generated_table_has_one_row_per_builtin_and_baseline_in_registry_order():
    rows = docs.markdown_table().splitlines()[2:]
    names = [row.split("|")[1].strip().strip("`") for row in rows]
    assert names == F.builtin_names() + F.baseline_names()
    for row, name in zip(rows, names):
        f = F.FEATURES[name]
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1:4] == [f.kind, "yes" if f.baseline else "", "yes" if f.code_aware else ""], name


def test_user_features_stay_out_of_the_generated_table():
    F.register("doc_test_vowel", lambda t: np.array([c in "aeiou" for c in t]), description="a vowel")
    try:
        assert "doc_test_vowel" not in docs.markdown_table()
    finally:
        del F.FEATURES["doc_test_vowel"]


def test_markdown_specials_are_escaped_outside_code_only():
    assert docs._cell("a | b") == "a \\| b"
    assert docs._cell("&quot; <b> [[x]] *y*") == "\\&quot; \\<b> \\[\\[x\\]\\] \\*y\\*"
    assert docs._cell("C `if (a|b)` and \\n") == "C `if (a\\|b)` and \\n"


def test_docs_script_rewrites_only_the_table(tmp_path):
    page = tmp_path / "features.md"
    page.write_text(f"# Head\n\n{docs.BEGIN}\nstale\n{docs.END}\n\nTail.\n", encoding="utf-8")
    assert docs.main(["--check", str(page)]) == 1
    assert docs.main([str(page)]) == 0
    assert page.read_text(encoding="utf-8") == (f"# Head\n\n{docs.BEGIN}\n{docs.markdown_table()}\n{docs.END}"
                                                "\n\nTail.\n")
    assert docs.main(["--check", str(page)]) == 0
