"""neuroscope: look inside trained character-level recurrent language models.

    >>> import neuroscope as ns
    >>> ckpt = ns.load_checkpoint("wp_lstm3x512.pt")
    >>> text = ns.read_text("warpeace.txt")
    >>> result = ns.probe(ckpt, text[:20_000], {"in_quote": ns.features.label(text[:20_000], "in_quote")})
    >>> ns.explain(ckpt, text[:20_000], ["l2.c.328"]).table

The stages, one package or module each (docs/architecture.md): text and checkpoint -> record (through
hooks) -> probe, explain, match -> report; the cli on top. The analyses (probe, explain, match, record,
build_report, iter_states) load on first use, so `import neuroscope` costs only torch and the model.
"""
import importlib
import sys
import types


class _CallableModule(types.ModuleType):
    """A module that is also its main function: `ns.probe(...)` calls `ns.probe.probe(...)`.

    Python binds `neuroscope.probe` to the subpackage once it is imported, whatever the package
    binds first, so the subpackage itself must be callable for `ns.probe(...)` to keep working.
    """

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rsplit(".", 1)[-1])(*args, **kwargs)


def callable_module(name: str) -> None:
    """Make the module `name` (a neuroscope.X whose main function is X) callable as that function."""
    sys.modules[name].__class__ = _CallableModule


from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402 (after the helper above)
from .errors import UserError  # noqa: E402
from .model import CharRNN, ModelConfig  # noqa: E402
from .text import Vocab, read_text, select_span, split_span  # noqa: E402

__version__ = "0.1.0"

# name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {
    "probe": ("neuroscope.probe", None), "ProbeConfig": ("neuroscope.probe", "ProbeConfig"),
    "explain": ("neuroscope.explain", None), "ExplainConfig": ("neuroscope.explain", "ExplainConfig"),
    "match": ("neuroscope.match", None), "MatchConfig": ("neuroscope.match", "MatchConfig"),
    "record": ("neuroscope.record", None), "iter_states": ("neuroscope.record", "iter_states"),
    "report": ("neuroscope.report", None), "build_report": ("neuroscope.report", "build_report"),
    "hooks": ("neuroscope.hooks", None), "Trace": ("neuroscope.hooks", "Trace"),
    "features": ("neuroscope.features", None),
    "causes": ("neuroscope.causes", None), "patch": ("neuroscope.causes", "patch"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'neuroscope' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Checkpoint", "CharRNN", "ModelConfig", "UserError", "Vocab", "load_checkpoint", "read_text",
           "save_checkpoint", "select_span", "split_span", "__version__", *_LAZY]
