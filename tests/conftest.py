"""Shared fixtures: the reference corpora and checkpoints in ../shared.

They exist beside every CI checkout. A user's fresh clone may lack them: then the tests that need
them are skipped with the reason, except under CI (CI=true), where a missing file is a failure.
"""
import os
from pathlib import Path

import pytest
import torch

from analyses._paths import SHARED  # ../shared beside the checkout, for tests and analyses alike

# The suite runs in one pytest-xdist worker per core (pyproject's addopts): one torch thread each, since
# two OpenMP threads per worker on a busy core wait for each other at every step. Alone, two threads.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


def _need(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; CI must have ../shared beside the checkout")
        pytest.skip(f"needs {path} (the team's ../shared folder)")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data."""
    return _need(SHARED / "data")


@pytest.fixture(scope="session")
def shared_models():
    """Path of ../shared/models."""
    return _need(SHARED / "models")


@pytest.fixture(scope="session")
def reference(shared_models):
    """reference(name) -> the checkpoint ../shared/models/<name>.pt, loaded once per test run (shared: do
    not change its weights)."""
    from functools import cache
    from neuroscope.checkpoint import load_checkpoint
    return cache(lambda name: load_checkpoint(shared_models / f"{name}.pt"))


@pytest.fixture(scope="session")
def wp_small(reference):
    """The small War and Peace model (2 x 128 LSTM), loaded once."""
    return reference("wp_lstm2x128")


@pytest.fixture(scope="session")
def warpeace(shared_data):
    from neuroscope.text import read_text
    return read_text(shared_data / "warpeace.txt")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (pytestmark = pytest.mark.usefixtures("one_thread")): batch-1 steps
    gain little from a second thread, and on a busy machine OpenMP's hand-offs make them many times
    slower (the demo's setup took 3.5 times as long at two threads on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecurrenceSteps:
    """Counts how the recurrence is run, by a forward pre-hook on the model's `rnn`: calls, time steps
    (the sum of every call's T) and rows (the sum of T x B). One pass over N characters in one stream
    is N steps; a batched pass that reads the same N characters in 21 rows is still N steps (21 N rows)."""

    def __init__(self, model):
        self.calls = self.steps = self.rows = 0
        self._handle = model.rnn.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        x = args[0]
        B, T = (x.shape[0], x.shape[1]) if x.dim() == 3 else (1, x.shape[0])      # batch_first CharRNN
        self.calls += 1
        self.steps += T
        self.rows += T * B

    def passes(self, n: int) -> float:
        """Sequential passes over n characters: steps / n."""
        return self.steps / n

    def close(self):
        self._handle.remove()


@pytest.fixture
def recurrence_steps():
    """recurrence_steps(model) -> a RecurrenceSteps counting model.rnn's runs until the test ends."""
    made = []

    def start(model):
        made.append(RecurrenceSteps(model))
        return made[-1]
    yield start
    for counter in made:
        counter.close()
