"""Feature labels: exact on hand-checked spans of every corpus, equal to slow reference
implementations on generated text, and the API / CLI around them."""
import json
import re
import string as string_module
import base64 as base64_module
import textwrap as textwrap_module
import tokenize
import io
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings, strategies as st

from neuroscope import features as F
from neuroscope.cli import cli
from neuroscope.errors import UserError
from neuroscope.text import read_text


def bits(values) -> str:
    return "".join(str(int(v)) for v in values)


def from_pieces(pieces):
    """[(text, flag), ...] -> (text, expected 0/1 per char): each piece's chars get its flag."""
    text = "".join(p for p, _ in pieces)
    return text, "".join(str(f) * len(p) for p, f in pieces)


# ---------------------------------------------------------------- slow references

def ref_depth(text, opens, closes, skip=None):
    d, out = 0, []
    for k, ch in enumerate(text):
        if not (skip is not None and skip[k]):
            if ch in opens:
                d += 1
            elif ch in closes:
                d = max(d - 1, 0)
        out.append(d)
    return out


def ref_quote(text):
    straight = typo = 0
    blank_line, out = True, []
    for k, ch in enumerate(text):
        if ch == "\n":
            if blank_line:
                straight = typo = 0
            blank_line = True
        else:
            if ch not in " \t\r\x0b\x0c":
                blank_line = False
            if ch == '"' or (ch == ";" and k >= 5 and text[k - 5:k + 1] == "&quot;"):
                straight ^= 1
            elif ch == "\u201c":
                typo = 1
            elif ch == "\u201d":
                typo = 0
        out.append(straight | typo)
    return out


def ref_doubled(text, o, c):
    """Depth of [[ ]] / {{ }} pairs scanned left to right, reset at every raw '<'."""
    n, d, i, out = len(text), 0, 0, [0] * len(text)
    while i < n:
        if text[i] == "<":
            d = 0
        elif text.startswith(o * 2, i) or text.startswith(c * 2, i):
            out[i] = d
            d = d + 1 if text[i] == o else max(d - 1, 0)
            out[i + 1] = d
            i += 2
            continue
        out[i] = d
        i += 1
    return out


def ref_c_lexer(text):
    """(in_string, in_comment, masked) of C text, one character at a time."""
    n = len(text)
    string, comment, masked = [0] * n, [0] * n, [0] * n

    def mark(arr, a, b):
        for k in range(a, b):
            arr[k] = 1
    i = 0
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            mark(comment, i + 1, j), mark(masked, i, j)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                mark(comment, i + 1, n), mark(masked, i, n)
                i = n
            else:
                mark(comment, i + 1, j + 1), mark(masked, i, j + 2)
                i = j + 2
        elif text[i] in "\"'":
            q, j = text[i], i + 1
            while j < n and text[j] != q and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            if j < n and text[j] == q:
                mark(string, i, j), mark(masked, i, j + 1)
                i = j + 1
            else:
                j = min(j, n)
                mark(string, i, j), mark(masked, i, j)
                i = j
        else:
            i += 1
    return string, comment, masked


def ref_c_if(text):
    n = len(text)
    _, _, masked = ref_c_lexer(text)
    out = [0] * n
    for i in range(n - 1):
        if not text.startswith("if", i) or (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_#")):
            continue
        j = i + 2
        while j < n and text[j] in " \t\n\r\x0b\x0c":
            j += 1
        if j >= n or text[j] != "(" or masked[j]:
            continue
        depth, q = 1, j + 1
        while q < n and depth:
            if not masked[q]:
                depth += {"(": 1, ")": -1}.get(text[q], 0)
            q += 1
        end = q - 1 if depth == 0 else n
        for k in range(j, end):
            out[k] = 1
    return out


def ref_lines(text):
    pos, rem, ind = [], [], []
    for line in text.splitlines(keepends=True) if "\r" not in text else re.findall(r"[^\n]*\n|[^\n]+$", text):
        body = line[:-1] if line.endswith("\n") else line
        lead = re.match(r"[ \t]*", body).group()
        width = len(lead.expandtabs(8))
        for k in range(len(line)):
            pos.append(k)
            rem.append(len(body) - k)
            ind.append(width)
    return pos, rem, ind


# Tokens that make the interesting cases likely in generated text.
TOKENS = list("ab x(){}[]\"'/*\\#\n\r\t;:=<") + ["\u201c", "\u201d", "&quot;", "[[", "]]", "{{", "}}", "/*",
                                               "*/", "//", "if (", "if(", "\nif (", "www.x", "http://a.b/c)."]
texts = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)
ALL = F.builtin_names() + F.baseline_names()


# ---------------------------------------------------------------- properties

@settings(max_examples=60, deadline=None)
@given(texts, st.sampled_from(["c", "python", "prose"]))
def test_every_feature_gives_one_label_per_character(text, lang):
    out = F.resolve(text, names=ALL, lang=lang)
    for name, v in out.items():
        assert v.shape == (len(text),), name
        assert v.dtype == (np.uint8 if F.FEATURES[name].kind == "binary" else np.int32), name
        if F.FEATURES[name].kind == "binary":
            assert set(np.unique(v)) <= {0, 1}, name
        else:
            assert v.min(initial=0) >= 0, name


@settings(max_examples=150, deadline=None)
@given(texts)
def test_depths_equal_a_running_counter_floored_at_zero(text):
    string, comment, masked = ref_c_lexer(text)
    for name, o, c in [("bracket_depth", "([{", ")]}"), ("paren_depth", "(", ")"),
                       ("square_depth", "[", "]"), ("brace_depth", "{", "}")]:
        assert F.label(text, name, lang="prose").tolist() == ref_depth(text, o, c), name
        assert F.label(text, name, lang="c").tolist() == ref_depth(text, o, c, masked), name


@settings(max_examples=150, deadline=None)
@given(texts)
def test_in_quote_equals_a_quote_state_machine(text):
    assert F.label(text, "in_quote").tolist() == ref_quote(text)


@settings(max_examples=150, deadline=None)
@given(texts)
def test_wiki_markup_depth_equals_pairing_left_to_right(text):
    assert F.label(text, "template_depth").tolist() == ref_doubled(text, "{", "}")
    assert F.label(text, "in_wikilink").tolist() == [int(d > 0) for d in ref_doubled(text, "[", "]")]


@settings(max_examples=200, deadline=None)
@given(texts)
@example("/*\\*/")                  # a backslash escapes nothing in a comment: hypothesis found it once
def test_c_literals_comments_and_if_conditions_equal_a_reference_lexer(text):
    string, comment, _ = ref_c_lexer(text)
    assert F.label(text, "in_string", lang="c").tolist() == string
    assert F.label(text, "in_comment", lang="c").tolist() == comment
    assert F.label(text, "in_if_condition", lang="c").tolist() == ref_c_if(text)


@settings(max_examples=150, deadline=None)
@given(texts)
def test_line_features_equal_a_per_line_loop(text):
    pos, rem, ind = ref_lines(text)
    assert F.label(text, "line_position").tolist() == pos
    assert F.label(text, "line_remaining").tolist() == rem
    assert F.label(text, "indent_depth").tolist() == ind


# Causal definitions: the label of a character depends only on the text up to it.
CAUSAL = [("in_quote", "prose"), ("in_wikilink", "prose"), ("in_template", "prose"), ("template_depth", "prose"),
          ("bracket_depth", "c"), ("paren_depth", "c"), ("square_depth", "c"), ("brace_depth", "c"),
          ("in_string", "c"), ("in_comment", "c"), ("in_if_condition", "c"), ("line_position", "c")]


@settings(max_examples=150, deadline=None)
@given(texts, texts)
def test_labels_of_a_prefix_do_not_change_with_what_follows(a, b):
    for name, lang in CAUSAL:
        assert bits(F.label(a + b, name, lang=lang)[:len(a)]) == bits(F.label(a, name, lang=lang)), name


@settings(max_examples=100, deadline=None)
@given(texts, texts)
def test_line_features_concatenate_at_line_ends_and_char_classes_anywhere(a, b):
    for name in F.baseline_names():
        assert np.array_equal(F.label(a + b, name), np.concatenate([F.label(a, name), F.label(b, name)]))
    a = a + "\n"
    for name in ("line_position", "line_remaining", "indent_depth"):
        assert np.array_equal(F.label(a + b, name), np.concatenate([F.label(a, name), F.label(b, name)])), name


# ---------------------------------------------------------------- War and Peace (BOM, CRLF)

@pytest.fixture(scope="module")
def wp_labels(warpeace):
    return F.resolve(warpeace, names=["in_quote", "line_position", "line_remaining", "is_newline", "is_space",
                                      "indent_depth", "in_string", "bracket_depth"])


def test_warpeace_first_line_bom_and_crlf(warpeace, wp_labels):
    line = '\ufeff"Well, Prince, so Genoa and Lucca are now just family estates of the\r\n'
    assert warpeace[:71] == line
    assert wp_labels["line_position"][:72].tolist() == list(range(71)) + [0]     # BOM is char 0; \r 69, \n 70
    assert wp_labels["line_remaining"][:71].tolist() == list(range(70, -1, -1))  # \r is 1, \n is 0
    assert bits(wp_labels["is_newline"][68:72]) == "0010"
    assert bits(wp_labels["is_space"][68:72]) == "0100"                          # \r is a space, \n is not
    assert bits(wp_labels["in_quote"][:3]) == "011"                              # BOM 0, opening quote 1
    assert F.sniff_language(warpeace) == "prose"
    assert wp_labels["in_string"].sum() == 0 and wp_labels["indent_depth"].max() == 0


def test_warpeace_quote_spanning_paragraphs_reopens_at_each(warpeace, wp_labels):
    # Hippolyte's speech: its first paragraph has no closing quote; the blank line closes it.
    text, want = from_pieces([
        ('"The Berlin cabinet cannot express a feeling of alliance,', 1), ('" began\r\nHippolyte gazing round '
                                                                        'with importance at the others, ', 0),
        ('"without\r\nexpressing... as in its last note... you understand... Besides, unless\r\nHis Majesty '
         'the Emperor derogates from the principle of our alliance...\r\n\r', 1), ("\n", 0),
        ('"Wait, I have not finished...', 1), ('" he said to Prince Andrew, seizing him by\r\nthe arm, ', 0),
        ('"I', 1)])
    assert warpeace[401711:401711 + len(text)] == text
    assert bits(wp_labels["in_quote"][401711:401711 + len(text)]) == want


def test_warpeace_apostrophes_inside_a_quote_do_not_toggle_it(warpeace, wp_labels):
    s = warpeace.index("my 'faithful")
    assert warpeace[s:s + 29] == "my 'faithful\r\nslave,' as you "
    assert bits(wp_labels["in_quote"][s:s + 29]) == "1" * 29


# ---------------------------------------------------------------- enwiki.xml (&quot;, URLs, markup)

@pytest.fixture(scope="module")
def enwiki(shared_data):
    return read_text(shared_data / "enwiki.xml")


@pytest.fixture(scope="module")
def wiki_labels(enwiki):
    return F.resolve(enwiki, names=["in_quote", "in_url", "in_wikilink", "in_template", "template_depth"])


def test_enwiki_quot_entities_open_at_their_semicolon(enwiki, wiki_labels):
    text, want = from_pieces([("&quot", 0), (";Anarchism.&quot", 1), ("; The Shorter", 0)])
    assert enwiki[5173:5173 + len(text)] == text
    assert bits(wiki_labels["in_quote"][5173:5173 + len(text)]) == want
    # A quotation inside a <ref>, ending right before an external link.
    text, want = from_pieces([("sell anarchism short.&quot", 1), (";[", 0), ("http://books.google.com.ec/books?"
                              "id=kkj5i3CeGbQC&amp;printsec=frontcover#v=onepage&amp;q&amp;f=false", 1), (" ''", 0)])
    assert enwiki[9397:9397 + len(text)] == text
    assert bits(wiki_labels["in_quote"][9397:9397 + 28]) == want[:28]
    assert bits(wiki_labels["in_url"][9397:9397 + len(text)]) == want[:28].replace("1", "0") + want[28:]


def test_enwiki_url_in_a_template_ends_before_the_closing_braces(enwiki, wiki_labels):
    text, want = from_pieces([("|url=", 0), ("https://books.google.com/books?id=yg9HFrOG89kC&amp;pg=PA24", 1),
                              ("}}&lt;/ref&gt;", 0)])
    assert enwiki[171937:171937 + len(text)] == text
    assert bits(wiki_labels["in_url"][171937:171937 + len(text)]) == want
    close = 171937 + text.index("}}")                # the end of {{cite book ...}}
    assert bits(wiki_labels["in_template"][close:close + 3]) == "100"


def test_enwiki_links_and_templates_from_their_second_bracket(enwiki, wiki_labels):
    rest = "'''Anarchism''' is a [[political philosophy]] that advocates [[self-governance|self-governed]] societies"
    text, templates = from_pieces([("{", 0), ("{Use British English|date=January 2014}", 1), ("}\n{", 0),
                                   ("{Anarchism sidebar}", 1), ("}\n" + rest, 0)])
    same, links = from_pieces([("{{Use British English|date=January 2014}}\n{{Anarchism sidebar}}\n"
                                "'''Anarchism''' is a [", 0), ("[political philosophy]", 1),
                               ("] that advocates [", 0), ("[self-governance|self-governed]", 1), ("] societies", 0)])
    assert enwiki[4160:4160 + len(text)] == text == same
    assert bits(wiki_labels["in_template"][4160:4160 + len(text)]) == templates
    assert bits(wiki_labels["in_wikilink"][4160:4160 + len(text)]) == links


def test_enwiki_link_cut_off_in_an_edit_summary_ends_at_the_xml_tag(enwiki, wiki_labels):
    s = 1793962
    assert enwiki[s:s + 60] == "<comment>/* Other uses */ Add [[Austin (building).</comment>"
    assert bits(wiki_labels["in_wikilink"][s + 30:s + 52]) == "0" + "1" * 19 + "00"   # open until '<'
    assert wiki_labels["in_wikilink"][s + 50:s + 170].sum() == 0                     # not into the next page


def test_enwiki_tex_braces_in_math_are_not_templates(enwiki, wiki_labels):
    s = enwiki.index("\\alpha_{H_{n-i} A^{i-} }= {{[H^+ ]")
    e = enwiki.index("&lt;/math&gt;", s)
    assert wiki_labels["template_depth"][s:e].sum() == 0
    assert F.label("{{[H^+ ]^{n-i} \\prod_{j=0}", "template_depth")[2] == 1    # outside <math> it would count


# ---------------------------------------------------------------- linux.txt (C)

@pytest.fixture(scope="module")
def linux(shared_data):
    return read_text(shared_data / "linux.txt")


@pytest.fixture(scope="module")
def linux_labels(linux):
    return F.resolve(linux, names=["in_string", "in_comment", "brace_depth", "paren_depth", "in_if_condition",
                                   "indent_depth", "in_url", "in_quote"])


def test_linux_is_sniffed_as_c(linux):
    assert F.sniff_language(linux) == "c"


def test_linux_escaped_quotes_stay_inside_the_string(linux, linux_labels):
    text, want = from_pieces([("\tif ", 0), ("(!pathname", 1), (") {\n\t\taudit_log_format(ab, ", 0),
                              ('"\\"<no_memory>\\"', 1), ('");', 0)])
    assert linux[86518:86518 + len(text)] == text
    s, e = 86518, 86518 + len(text)
    assert bits(linux_labels["in_if_condition"][s:e]) == want[:text.index(") {") + 1].ljust(len(text), "0")
    assert bits(linux_labels["in_string"][s:e]) == "0" * text.index('"') + want[text.index('"'):]
    assert linux_labels["indent_depth"][s + 20:e].tolist() == [16] * (len(text) - 20)
    assert linux_labels["brace_depth"][s:e].tolist() == [1] * 16 + [2] * (len(text) - 16)  # in a function


def test_linux_quote_char_literals(linux, linux_labels):
    s = 84403
    assert linux[s:s + 14] == "\t*ptr++ = '\"';"
    assert bits(linux_labels["in_string"][s:s + 14]) == "0" * 10 + "110" + "0"
    s = 4284084 + len("else if (*cp == ")
    assert linux[s:s + 20] == "'\\'' || *cp == '\"')\n"
    assert bits(linux_labels["in_string"][s:s + 20]) == "1110" + "0" * 11 + "110" + "00"
    assert bits(linux_labels["in_if_condition"][s:s + 20]) == "1" * 18 + "00"


def test_linux_braces_in_comments_and_strings_do_not_count(linux, linux_labels):
    s = 603109 - 2
    text = "\t\t/* TASK_FROZEN -> TASK_{STOPPED,TRACED} */\n"
    assert linux[s:s + len(text)] == text
    assert linux_labels["brace_depth"][s:s + len(text)].tolist() == [2] * len(text)
    assert bits(linux_labels["in_comment"][s:s + len(text)]) == "000" + "1" * (len(text) - 5) + "00"
    s = 418792
    text = 'kdebug("__put_cred(%p{%ld,%d})", cred,'
    assert linux[s:s + len(text)] == text
    assert linux_labels["brace_depth"][s:s + len(text)].tolist() == [1] * len(text)
    assert linux_labels["paren_depth"][s:s + len(text)].tolist() == [0] * 6 + [1] * (len(text) - 6)
    s = 2427564
    text = "\t * { // no fields of skb are ever used }\n"
    assert linux[s:s + len(text)] == text
    assert linux_labels["brace_depth"][s:s + len(text)].tolist() == [1] * len(text)
    assert linux_labels["in_comment"][s:s + len(text)].tolist() == [1] * len(text)


def test_linux_every_function_body_closes_at_brace_depth_zero(linux, linux_labels):
    # All 8,131 lines that are exactly "}" close a function, struct or initialiser at file level.
    ends = np.array([m.start() for m in re.finditer(r"(?m)^\}$", linux)])
    opens = np.array([m.start() for m in re.finditer(r"(?m)^\{$", linux)])
    assert len(ends) == 8131 and len(opens) == 8132
    assert (linux_labels["brace_depth"][ends] == 0).all()
    assert (linux_labels["brace_depth"][opens] == 1).all()


def test_linux_url_in_a_comment(linux, linux_labels):
    s = 275610
    text, want = from_pieces([(" *   ", 0), ("http://www.kernel.org/pub/linux/libs/security/linux-privs/", 1),
                              ("\n */", 0)])
    assert linux[s - 5:s - 5 + len(text)] == text
    assert bits(linux_labels["in_url"][s - 5:s - 5 + len(text)]) == want
    assert linux_labels["in_comment"][s - 5:s - 5 + len(text) - 3].all()


# ---------------------------------------------------------------- Python source

def py_oracle(src):
    """(in_string, in_comment) from Python's own tokenizer, by the alignment rule."""
    offsets = [0]
    for line in src.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    s_rng, c_rng = [], []
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            a = offsets[tok.start[0] - 1] + tok.start[1]
            b = offsets[tok.end[0] - 1] + tok.end[1]
            if tok.type == tokenize.COMMENT:
                c_rng.append((a, b))
            else:
                p = re.match(r"[rRbBuUfF]*", tok.string).end()
                q = 3 if tok.string[p:p + 3] in ('"""', "'''") else 1
                s_rng.append((a + p + q - 1, b - 1))
    out = []
    for rng in (s_rng, c_rng):
        v = np.zeros(len(src), np.uint8)
        for a, b in rng:
            v[a:b] = 1
        out.append(v)
    return out


@pytest.mark.parametrize("module", [string_module, base64_module, textwrap_module, tokenize])
def test_python_literals_and_comments_equal_pythons_tokenizer(module):
    src = open(module.__file__, encoding="utf-8").read()
    assert F.sniff_language(src) == "python"
    want_string, want_comment = py_oracle(src)
    assert np.array_equal(F.label(src, "in_string"), want_string)
    assert np.array_equal(F.label(src, "in_comment"), want_comment)


def test_python_raw_triple_quoted_string_holding_quotes_and_hash():
    src = open(string_module.__file__, encoding="utf-8").read()
    line = 'punctuation = r"""!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~"""\n'
    s = src.index(line)
    assert bits(F.label(src, "in_string")[s:s + len(line)]) == "0" * 17 + "1" * 35 + "00"
    assert F.label(src, "in_comment")[s:s + len(line)].sum() == 0
    assert F.label(src, "bracket_depth")[s:s + len(line)].sum() == 0


def test_python_prefixes_triple_quotes_and_if_headers():
    src = ("x = b'a\\'' + rb\"\"\"q\"\"\"  # if (\n"
           "if (n := len(a)) > f(lambda y: y['k:']):  # c\n"
           "    pass\n")
    st_, cm, cond = (F.label(src, n, lang="python") for n in ("in_string", "in_comment", "in_if_condition"))
    line1 = "x = b'a\\'' + rb\"\"\"q\"\"\"  # if (\n"
    assert bits(st_[:len(line1)]) == "00000" + "1111" + "0" * 8 + "1111" + "0" * 10
    assert bits(cm[:len(line1)]) == "0" * 24 + "1" * 6 + "0"
    assert cond[:len(line1)].sum() == 0                       # `if` in a comment is none
    line2 = "if (n := len(a)) > f(lambda y: y['k:']):  # c\n"
    assert bits(cond[len(line1):len(line1) + len(line2)]) == "0" + "1" * 38 + "0" * 7


def test_python_if_condition_in_the_stdlib():
    src = open(textwrap_module.__file__, encoding="utf-8").read()
    line = "        if self.break_on_hyphens is True:\n"
    s = src.index(line)
    assert bits(F.label(src, "in_if_condition")[s:s + len(line)]) == "0" * 9 + "1" * 31 + "00"
    doc = src.index("if break_on_hyphens is True, or in:")         # inside a docstring
    assert F.label(src, "in_if_condition")[doc:doc + 30].sum() == 0


# ---------------------------------------------------------------- small exact cases

def test_docstring_examples():
    assert bits(F.label('say "hi" (x)', "in_quote")) == "000011100000"
    assert F.label("a(b(c)))", "paren_depth").tolist() == [0, 1, 1, 2, 2, 1, 0, 0]


def test_url_endings_in_prose_and_wiki():
    t = "see http://x.org/a_(b)), www.y.com. [http://z.net/p?q=1&amp;r=2 label] <http://u.v/>"
    got = bits(F.label(t, "in_url"))
    spans = [(t.index("http://x"), t.index("), www")), (t.index("www."), t.index(". [")),
             (t.index("http://z"), t.index(" label")), (t.index("http://u"), t.index(">"))]
    want = ["0"] * len(t)
    for a, b in spans:
        want[a:b] = "1" * (b - a)
    assert got == "".join(want)
    assert F.label("awww.x.com http:// xwww.y", "in_url").sum() == 0


def test_typographic_quotes_and_blank_line_reset():
    t = "a \u201cb\u201d c \u201cd\r\n \r\ne"
    assert bits(F.label(t, "in_quote")) == "0011000011111100"


# ---------------------------------------------------------------- API

@pytest.fixture
def clean_registry():
    before = dict(F.FEATURES)
    yield
    F.FEATURES.clear()
    F.FEATURES.update(before)


def test_unknown_feature_is_a_one_line_error_listing_the_valid_names():
    with pytest.raises(UserError) as exc:
        F.label("abc", "in_qoute")
    msg = str(exc.value)
    assert "\n" not in msg and "unknown feature 'in_qoute'" in msg
    for name in ALL:
        assert name in msg


def test_registry_lists_builtins_and_baselines():
    assert F.baseline_names() == ["is_space", "is_newline", "is_upper", "is_lower", "is_alpha", "is_digit",
                                  "is_punct", "is_quote_char", "is_bracket"]
    assert set(F.builtin_names()) >= {"in_quote", "in_string", "in_url", "in_wikilink", "in_template",
                                      "bracket_depth", "paren_depth", "square_depth", "brace_depth",
                                      "line_position", "line_remaining", "in_if_condition", "in_comment",
                                      "indent_depth"}
    for f in F.FEATURES.values():
        assert f.description and "\n" not in f.description
    assert [n for n in ALL if F.FEATURES[n].code_aware] == [
        "bracket_depth", "paren_depth", "square_depth", "brace_depth", "in_string", "in_comment", "in_if_condition"]


def test_register_a_user_feature(clean_registry):
    F.register("vowel", lambda t: [c in "aeiou" for c in t], description="a vowel")
    assert bits(F.label("banana", "vowel")) == "010101"
    assert F.resolve("ab", all_features=True)["vowel"].tolist() == [1, 0]
    assert "vowel" not in F.builtin_names() and "vowel" not in F.baseline_names()
    F.register("word_len", lambda t: [len(t)] * len(t), kind="count")
    assert F.label("abc", "word_len").dtype == np.int32
    with pytest.raises(UserError, match="already registered"):
        F.register("vowel", lambda t: [0] * len(t))
    F.register("vowel", lambda t: [1] * len(t), replace=True)
    assert F.label("ab", "vowel").tolist() == [1, 1]
    with pytest.raises(UserError, match="built-in"):
        F.register("in_quote", lambda t: [0] * len(t))
    F.register("short", lambda t: [0])
    with pytest.raises(UserError, match="one label per character"):
        F.label("abc", "short")
    F.register("two", lambda t: [2] * len(t))
    with pytest.raises(UserError, match="only 0 and 1"):
        F.label("abc", "two")
    with pytest.raises(UserError):
        F.register("bad name", lambda t: t)


def test_resolve_regex_file_and_span_features(tmp_path):
    text = "ab 12 cd 345"
    np.save(tmp_path / "mine.npy", np.array([c.isdigit() for c in text]))
    np.save(tmp_path / "counts.npy", np.arange(len(text)))
    np.save(tmp_path / "short.npy", np.zeros(3))
    out = F.resolve(text, names=["is_digit"], regexes=["num=[0-9]+", ("ab", "(?i)AB")],
                    files=[f"mine={tmp_path / 'mine.npy'}", ("cnt", tmp_path / "counts.npy")],
                    spans=["hand=1003:1005,1009:1010"], offset=1000)
    assert list(out) == ["is_digit", "num", "ab", "mine", "cnt", "hand"]
    assert bits(out["num"]) == bits(out["is_digit"]) == bits(out["mine"]) == "000110000111"
    assert bits(out["ab"]) == "110000000000"
    assert out["mine"].dtype == np.uint8 and out["cnt"].dtype == np.int32
    assert bits(out["hand"]) == "000110000100"
    with pytest.raises(UserError, match="bad regular expression"):
        F.resolve(text, regexes=["x=[0-"])
    with pytest.raises(UserError, match=r"shape \(12,\); got shape \(3,\)"):
        F.resolve(text, files=[f"s={tmp_path / 'short.npy'}"])
    with pytest.raises(UserError, match="no such file"):
        F.resolve(text, files=[f"s={tmp_path / 'none.npy'}"])
    with pytest.raises(UserError, match="inside the text"):
        F.resolve(text, spans=["h=3:5"], offset=1000)
    with pytest.raises(UserError, match="START:END"):
        F.resolve(text, spans=["h=3-5"])
    with pytest.raises(UserError, match="given twice"):
        F.resolve(text, names=["is_digit"], regexes=["is_digit=x"])
    with pytest.raises(UserError, match="NAME=PATTERN"):
        F.resolve(text, regexes=["nameonly"])
    assert list(F.resolve(text, all_features=True)) == list(F.FEATURES)


# ---------------------------------------------------------------- user regexes: bounded work

def _re_labels(pattern: str, text: str) -> str:
    """The labels a regex feature had when `re` ran it: 1 on every character of every match."""
    out = ["0"] * len(text)
    for m in re.finditer(pattern, text):
        out[m.start():m.end()] = "1" * (m.end() - m.start())
    return "".join(out)


REALISTIC = [r"[A-Z][a-z]+", r"\bthe\b", r"https?://\S+", r"\w+(?=,)", r"(?<=\. )[A-Z]", r"(?i)prince",
             r"(\w)\1", r"(?m)^\s*$", r"[0-9]+", r"x*", r"(?=a)", r"\s+|$", r"(?s)\(.*?\)"]


@pytest.mark.parametrize("pattern", REALISTIC)
def test_realistic_regexes_label_as_re_did(shared_data, pattern):
    text = (read_text(shared_data / "warpeace.txt")[:200_000]
            + " see http://example.org/a?b=1, or https://x.y (aa) bb.\n\n  \nEnd")
    assert bits(F.resolve(text, regexes=[("x", pattern)])["x"]) == _re_labels(pattern, text)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="aAb ,.\n(x)1é", max_size=60), st.sampled_from(REALISTIC))
def test_regex_labels_match_re_on_random_text(text, pattern):
    assert bits(F.resolve(text, regexes=[("x", pattern)])["x"]) == _re_labels(pattern, text)


@pytest.fixture
def short_regex_limit(monkeypatch):
    """A 1 s limit, so a runaway pattern is stopped quickly even on a loaded machine."""
    from neuroscope.features import patterns
    monkeypatch.setattr(patterns, "SECONDS", 1.0)


@pytest.mark.parametrize("pattern, text", [
    (r"(a+)+$", "a" * 4000 + "!"), (r"(a|aa)+$", "a" * 40 + "!"), (r"(x+x+)+y", "x" * 3000),
    (r"(\w+\s?)+$", "word " * 800 + "!"),
])
def test_catastrophic_backtracking_is_a_user_error_not_a_hang(short_regex_limit, pattern, text):
    start = time.monotonic()
    with pytest.raises(UserError) as exc:
        F.resolve(text, regexes=[f"x={pattern}"])
    assert time.monotonic() - start < 30          # a hang guard, not a speed test
    assert exc.value.param == "regexes"
    assert str(exc.value) == (f"regexes x: the pattern took longer than 1.0 s on {len(text):,} characters "
                              "(catastrophic backtracking?); simplify it")


def test_nested_plus_on_40_as_finishes_with_re_labels():
    start = time.monotonic()
    text = "a" * 40 + "!"
    assert bits(F.resolve(text, regexes=["x=(a+)+$"])["x"]) == "0" * 41
    assert bits(F.resolve("a" * 40, regexes=["x=(a+)+$"])["x"]) == "1" * 40
    assert time.monotonic() - start < 30


def test_regex_time_limit_grows_with_the_text():
    from neuroscope.features.patterns import time_limit, SECONDS, SECONDS_PER_MILLION_CHARS
    assert time_limit(0) == SECONDS == 10
    assert time_limit(10_000_000) == SECONDS + 10 * SECONDS_PER_MILLION_CHARS == 30


@pytest.mark.parametrize("pattern, message", [
    ("a{1000000000}", "too large (1,000,000,001 units"),
    ("(?:a{1000}){1000}", "too large"),
    ("[a-z]" * 20_000, "too large (20,000 units"),
    ("(" * 5000 + ")" * 5000, "nested or repeated too deeply"),
    ("x=(", None),
])
def test_regexes_too_large_to_compile_are_refused_at_once(pattern, message):
    start = time.monotonic()
    with pytest.raises(UserError) as exc:
        F.resolve("abc", regexes=[("x", pattern)])
    assert time.monotonic() - start < 30
    assert exc.value.param == "regexes" and str(exc.value).startswith("regexes x: ")
    assert message is None or message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_open_ended_and_modest_counts_are_not_too_large():
    text = "ab" * 50
    for pattern in [r"a{0,1000000}", r"(?:ab){2,}", r"\d{4}-\d{2}-\d{2}", r"[a-z]{3,1000000}"]:
        assert bits(F.resolve(text, regexes=[("x", pattern)])["x"]) == _re_labels(pattern, text)
    with pytest.raises(UserError, match="pattern must be a string"):
        F.resolve(text, regexes=[("x", 5)])


# Counts of 50,000: a count the size check missed compiles in well under a second and fails the test
# (a missed 1,000,000,000 would hang it).
@pytest.mark.parametrize("pattern", [
    r"(?:(?:a{30}){30}){30}", r"a{50000}?", r"a{50000}+", r"a{50000,}", r"a{50000,60000}", r"(?<=a{50000})b",
    r"(?P<n>ab){50000}", r"\{{50000}", r"[{]{50000}", r"[]{]{50000}", r"\N{DIGIT ONE}{50000}", r"(?#)a{50000}",
    # verbose mode as `regex` reads it: spaces and comments inside a count, a comment ended by any newline
    "(?x)a{ 50000 }", "(?x)a{5 0 0 0 0}", "(?x)a{5#\n0000}", "(?x:a {50000})", "(?x)a#\\\n{50000}",
])
def test_counted_repeats_are_found_wherever_regex_expands_them(pattern):
    with pytest.raises(UserError, match=r"regexes x: the pattern is too large \("):
        F.resolve("abc", regexes=[("x", pattern)])


@pytest.mark.parametrize("pattern, text", [
    (r"a\{1000000000}", "a{1000000000} a"), (r"[a{1000000000}]+", "x{10}y"), (r"[]{1000000000}]+", "]}{"),
    (r"[^]{1000000000}]+", "ab]c"), (r"[\]{1000000000}]+", "]1"), (r"(?#{1000000000})a", "aa"),
    (r"(?#\){1000000000})a", "ba"), ("(?x)a # {1000000000}", "aa"), ("(?x)[ ]{2}", "a  b"), ("(?x)[#]{2}", "##"),
    (r"a{}", "a{}"), (r"a{x}", "a{x}"), (r"a{,2}b", "aab"), (r"\d{4}-\d{2}", "2024-05"),
])
def test_braces_that_repeat_nothing_are_not_counted(pattern, text):
    assert bits(F.resolve(text, regexes=[("x", pattern)])["x"]) == _re_labels(pattern, text)


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
def test_a_posix_class_is_one_member_of_its_set_as_regex_reads_it():
    """`re` would read "[[:alpha:]" as a set repeated 10^9 times; `regex`, which compiles it, reads one set."""
    assert bits(F.resolve("ab2;", regexes=[("x", "[[:alpha:]{1000000000}]")])["x"]) == "1100"


def test_label_file_that_is_not_an_array_is_a_user_error(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match="cannot read"):
        F.resolve("abc", files=[f"x={tmp_path / 'x.npy'}"])


def test_library_errors_name_the_parameter_not_the_flag(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros(3))
    bad = [({"regexes": ["x=("]}, "regexes"), ({"regexes": ["nameonly"]}, "regexes"),
           ({"regexes": [("bad name", "x")]}, "regexes"), ({"files": [f"x={tmp_path / 'none.npy'}"]}, "files"),
           ({"files": [f"x={tmp_path / 'short.npy'}"]}, "files"), ({"spans": ["x=5:2"]}, "spans"),
           ({"spans": ["x=3-5"]}, "spans"), ({"lang": "perl"}, "lang")]
    for kwargs, param in bad:
        with pytest.raises(UserError) as exc:
            F.resolve("ab 12 cd", **kwargs)
        msg = str(exc.value)
        assert exc.value.param == param and re.search(rf"\b{param}\b", msg) and "--" not in msg, (kwargs, msg)
    for args, param in [(("bad name", len), "name"), (("x", len, "float"), "kind"), (("in_quote", len), "name")]:
        with pytest.raises(UserError) as exc:
            F.register(*args)
        assert exc.value.param == param and re.search(rf"\b{param}\b", str(exc.value))


def test_label_files_take_their_kind_from_the_values_then_kind_of_from_the_dtype(tmp_path):
    text = "ab 12"
    for name, arr in [("bits", np.array([0, 1, 1, 0, 1], np.int64)), ("cnt", np.arange(5)),
                      ("flt", np.linspace(0, 1, 5))]:
        np.save(tmp_path / f"{name}.npy", arr)
    out = F.resolve(text, files=[f"{n}={tmp_path / n}.npy" for n in ("bits", "cnt", "flt")])
    assert [out[n].dtype for n in ("bits", "cnt", "flt")] == [np.uint8, np.int32, np.float32]
    assert [F.kind_of(out[n]) for n in ("bits", "cnt", "flt")] == ["binary", "count", "count"]
    assert [F.summarize(out[n])["kind"] for n in ("bits", "cnt", "flt")] == ["binary", "count", "float"]
    for name in F.builtin_names() + F.baseline_names():
        assert F.kind_of(F.label("a(b)\n", name)) == F.FEATURES[name].kind, name


def test_render_marks_labelled_characters():
    out = F.render('a "b"\r\nc\td', {"q": F.label('a "b"\r\nc\td', "in_quote"),
                                     "pos": F.label('a "b"\r\nc\td', "line_position")}, offset=10)
    assert out.splitlines() == ['  10 a "b"\u240d\u23ce', "   q   ^^", " pos 0123456", "  17 c\u2192d", "   q",
                                " pos 012"]


# ---------------------------------------------------------------- CLI

def test_cli_lists_every_feature():
    res = CliRunner().invoke(cli, ["features"])
    assert res.exit_code == 0
    names = [line.split()[0] for line in res.output.splitlines()]
    assert names == list(F.FEATURES)
    res = CliRunner().invoke(cli, ["features", "--json"])
    assert [r["name"] for r in json.loads(res.output)] == list(F.FEATURES)


def test_cli_shows_an_excerpt_with_marks(shared_data):
    wp = str(shared_data / "warpeace.txt")
    res = CliRunner().invoke(cli, ["features", "--text", wp, "--feature", "in_quote", "--start", "401711",
                                   "--chars", "400", "--show", "70"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "in_quote: 1 on" in lines[1]
    assert lines[3] == '   401711 "The Berlin cabinet cannot express a feeling of alliance," began\u240d\u23ce'
    assert lines[4] == " in_quote " + "^" * 57
    res = CliRunner().invoke(cli, ["features", "--text", wp, "--feature-span", "x=401712:401714", "--start",
                                   "401711", "--chars", "10", "--show", "5", "--json"])
    out = json.loads(res.output)
    assert out["shown"]["labels"]["x"] == [0, 1, 1, 0, 0] and out["lang"] == "prose"


@pytest.mark.parametrize("args, message", [
    (["--feature", "nope"], "Error: unknown feature 'nope'; valid: in_quote,"),
    (["--feature-regex", "x=("], "Error: --feature-regex x: bad regular expression"),
    (["--feature-span", "x=5:2"], "Error: --feature-span x: span 5:2 must have START < END"),
    ([], "Error: name what to label"),
])
def test_cli_bad_feature_input_is_one_line_error(shared_data, args, message):
    res = CliRunner().invoke(cli, ["features", "--text", str(shared_data / "tinyshakespeare.txt"),
                                   "--chars", "100"] + args)
    assert res.exit_code == 1
    assert res.output.startswith(message) and res.output.count("\n") == 1
    assert "Traceback" not in res.output


def test_cli_label_file_of_wrong_length(shared_data, tmp_path):
    np.save(tmp_path / "l.npy", np.zeros(99, np.uint8))
    res = CliRunner().invoke(cli, ["features", "--text", str(shared_data / "tinyshakespeare.txt"), "--chars",
                                   "100", "--feature-file", f"mine={tmp_path / 'l.npy'}"])
    assert res.exit_code == 1 and "expected one label per character, shape (100,); got shape (99,)" in res.output
    res = CliRunner().invoke(cli, ["features", "--feature", "in_quote"])
    assert res.exit_code == 1 and "add --text FILE" in res.output


def test_cli_runaway_regex_is_one_line_error(tmp_path, short_regex_limit):
    corpus = tmp_path / "a.txt"
    corpus.write_text("a" * 4000 + "!\n")
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["features", "--text", str(corpus), "--feature-regex", "x=(a+)+$"])
    assert time.monotonic() - start < 30
    assert res.exit_code == 1 and res.output.startswith("Error: ") and res.output.count("\n") == 1
    assert res.output.endswith(" x: the pattern took longer than 1.0 s on 4,002 characters "
                               "(catastrophic backtracking?); simplify it\n")
