"""Where the analyses, the benchmarks and the tests find things: the checkout, its reports folder, and
the team's reference data in ../shared beside the checkout (data/ the corpora, models/ the checkpoints).

It imports nothing of ours, so tests/conftest.py and a benchmark's fresh process can read it cheaply.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REPORTS = ROOT / "reports"
