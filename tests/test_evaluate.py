"""neuroscope.model.evaluate: the exact one-stream loss and the warmed multi-stream estimate."""
import numpy as np
import pytest

from neuroscope.errors import UserError
from neuroscope.model import evaluate
from neuroscope.record import char_losses


pytestmark = pytest.mark.usefixtures("one_thread")      # conftest: one torch thread


@pytest.fixture(scope="module")
def ids(wp_small, warpeace):
    return wp_small.vocab.encode(warpeace[500_000:503_001])             # 3,000 predictions


@pytest.mark.parametrize("streams, warmup", [(2, 10), (8, 100), (7, 450)])
def test_warmed_streams_count_each_prediction_once_after_their_warmup(wp_small, ids, streams, warmup):
    """Row k reads ids[k*m : k*m + warmup + m] from a zero state and counts from step warmup on (row 0
    from 0): the mean of those exact per-row losses, over all len(ids) - 1 predictions."""
    P = len(ids) - 1
    m = -(-(P - warmup) // streams)
    parts = []
    for k in range(-(-(P - warmup) // m)):
        row = char_losses(wp_small.model, ids[k * m:min(k * m + warmup + m, P) + 1])
        parts.append(row if k == 0 else row[warmup:])
    counted = np.concatenate(parts)
    got = evaluate(wp_small.model, ids, chunk=37, streams=streams, warmup=warmup)
    assert len(counted) == got.chars == P
    assert abs(got.loss_nats - float(counted.astype(np.float64).mean())) < 1e-5


def test_warmup_brings_the_streams_back_to_the_one_stream_loss(wp_small, ids):
    exact = evaluate(wp_small.model, ids).loss_nats
    cold = evaluate(wp_small.model, ids, streams=64).loss_nats
    warm = evaluate(wp_small.model, ids, streams=8, warmup=1000).loss_nats
    assert abs(warm - exact) < 1e-5 < abs(cold - exact)
    assert evaluate(wp_small.model, ids, warmup=500).loss_nats == exact         # one stream: warmup unused
    assert evaluate(wp_small.model, ids, streams=8, warmup=len(ids)).loss_nats == exact      # nothing to split
    short = evaluate(wp_small.model, ids[:1002], streams=8, warmup=1000)                  # one counted step left
    assert short.chars == 1001 and abs(short.loss_nats - evaluate(wp_small.model, ids[:1002]).loss_nats) < 1e-6


def test_negative_warmup_is_a_user_error_naming_the_parameter(wp_small, ids):
    with pytest.raises(UserError, match=r"\bwarmup\b") as err:
        evaluate(wp_small.model, ids, streams=4, warmup=-1)
    assert err.value.param == "warmup"
