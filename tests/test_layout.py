"""The shape of the package: few entries at the top, layers that import only downwards (the table in
docs/architecture.md), small modules and functions, public names in __all__, and the paths users write."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neuroscope"
STAGES = ("model", "checkpoint", "hooks", "dictionary", "probe", "explain", "causes", "report", "cli")       # packages whose helpers are private _modules


def layers() -> dict[str, int]:
    """{top-level module or package: layer}, read from docs/architecture.md's table."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return {name: int(layer) for layer, name in re.findall(r"^\| (\d+) \| `(\w+)/?` \|", doc, re.M)}


def top_level(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imports_of(path: Path) -> set[str]:
    """The top-level neuroscope modules a file imports (relative imports resolved)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            out.add(target[0] if target else "neuroscope")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("neuroscope."):
            out.add(node.module.split(".")[1])
    return out


def sources(*folders: str) -> list[Path]:
    return [p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts]


def test_the_package_has_at_most_20_entries_each_in_the_layer_table():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and not p.name.startswith("."))
    assert len(entries) <= 20, entries
    table = layers()
    modules = {e.removesuffix(".py") for e in entries if e.endswith(".py") or (PACKAGE / e).is_dir()} - {"__init__"}
    assert modules <= set(table), sorted(modules - set(table))
    assert set(table) <= modules, sorted(set(table) - modules)


def test_every_import_goes_to_a_lower_layer():
    table = layers()
    wrong = []
    for path in sources("neuroscope"):
        me = top_level(path)
        if me == "__init__":
            continue
        for other in imports_of(path) - {me, "neuroscope"}:      # "neuroscope": the package's callable_module
            if table[other] >= table[me]:
                wrong.append(f"{path.relative_to(ROOT)} imports {other} (layer {table[other]} >= {table[me]})")
    assert not wrong, "\n".join(wrong)


def test_no_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in sources("neuroscope", "analyses")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, long


def test_no_function_takes_more_than_10_parameters():
    wide = []
    for path in sources("neuroscope"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                n = len(names) + bool(a.vararg) + bool(a.kwarg)
                if n > 10:
                    wide.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n})")
    assert not wide, wide


@pytest.mark.parametrize("stage", STAGES)
def test_stage_packages_keep_their_helpers_private_and_list_their_names(stage):
    folder = PACKAGE / stage
    public = [p.name for p in folder.glob("*.py") if p.name != "__init__.py" and not p.name.startswith("_")]
    assert not public, public
    module = importlib.import_module(f"neuroscope.{stage}")
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


def test_the_paths_users_write_keep_working():
    import neuroscope as ns
    from neuroscope.explain import ExplainConfig, explain
    from neuroscope.hooks import Trace
    from neuroscope.match import MatchConfig, match
    from neuroscope.probe import ProbeConfig, ProbeResult, probe
    from neuroscope.record import Intervention, iter_states, record
    from neuroscope.report import ReportConfig, build_report
    assert (ns.iter_states, ns.build_report, ns.Trace) == (iter_states, build_report, Trace)
    assert (ns.ProbeConfig, ns.ExplainConfig, ns.MatchConfig) == (ProbeConfig, ExplainConfig, MatchConfig)
    for module, fn in ((ns.probe, probe), (ns.explain, explain), (ns.match, match), (ns.record, record)):
        assert callable(module) and getattr(module, fn.__name__) is fn     # ns.probe(...) is probe(...)
    assert ns.probe.ProbeResult is ProbeResult and ns.record.Intervention is Intervention
    assert ReportConfig().max_chars >= 1


def test_the_package_runs_its_main_functions_when_called(wp_small, warpeace):
    """ns.probe(...) and ns.record(...) call the functions, not the modules' namesakes by accident."""
    import neuroscope as ns
    at = warpeace.index('"', 2_950_000)                     # a stretch of dialogue in the test split
    text = warpeace[at - 500:at + 1500]
    states = ns.record(wp_small.model, wp_small.vocab.encode(text[:50]), ("h",))
    assert states["rnn.l0.h"].shape == (50, 128)
    result = ns.probe(wp_small, text, {"in_quote": ns.features.label(text, "in_quote")}, null=False,
                      sparse=False, control=False, baselines=False)
    assert set(result.ranking["feature"]) == {"in_quote"} and len(result.ranking) == 2 * 2 * 128
