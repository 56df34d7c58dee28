"""What `import neuroscope` and reaching `ns.probe` cost a fresh process, from one or more checkouts,
against the interpreter starting and doing nothing."""
from __future__ import annotations

import sys
from importlib.metadata import version

from .timing import commits, fresh, load_average, spread

# case -> the code its fresh process runs. A flat layout has no lazy ns.probe: there the probe module
# is imported by its name, which is what reaching ns.probe costs in the package layout.
CASES = {
    "python -c pass": "pass",
    "import neuroscope": "import neuroscope",
    "import neuroscope as ns; ns.probe": "import neuroscope as ns\n"
                                         "try:\n"
                                         "    ns.probe\n"
                                         "except AttributeError:\n"
                                         "    from neuroscope.probe import probe\n",
}


def run(trees, repeats, threads) -> dict:
    """Each case from each checkout in `trees` as `repeats` fresh processes, interleaved within each
    repeat so that a busy machine slows all of them alike; seconds of the whole process."""
    described = commits(trees)
    times = {(str(t), c): [] for t in trees for c in CASES}
    for _ in range(repeats):
        for tree in trees:
            for case, code in CASES.items():
                times[str(tree), case].append(fresh(tree, ["-c", code], threads, f"python -c {code!r}")[0])
    return {"python": sys.version.split()[0], "torch": version("torch"),
            "trees": described, "repeats": repeats, "load_average": load_average(),
            "runs": [{"tree": tree, "commit": described[tree], "case": case, "seconds": spread(ts),
                      "all_seconds": [round(t, 3) for t in ts]} for (tree, case), ts in times.items()]}
