"""`python analyses/benchmark <command> [options]`: the benchmarks' command line (see __init__)."""
import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a folder, Python puts this folder first on sys.path; the checkout goes there instead, so
    # that the folder imports as the package analyses.benchmark (and neuroscope is this checkout's).
    sys.path[0] = str(Path(__file__).resolve().parents[2])
    from analyses.benchmark.cli import cli
    cli()
