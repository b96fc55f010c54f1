"""Inception Score: equal to torch-fidelity 0.4.0's ``isc`` on the same logits; closed forms; guards."""

import numpy as np
import pytest
import torch
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

from fidkit.errors import BadInputError, FidkitWarning
from fidkit.metrics import ScoreWithSpread, inception_score


def _logits(n, c=1008, seed=0, scale=3.0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, c)) * scale).float()


@pytest.mark.parity
@pytest.mark.parametrize("n", [500, 503])  # 503: splits of unequal size (boundaries i*N//10)
def test_equals_torch_fidelity_with_its_default_shuffle(n):
    logits = _logits(n, seed=n)
    expected = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    got = inception_score(logits)
    assert got.mean == pytest.approx(expected[KEY_METRIC_ISC_MEAN], rel=1e-12)
    assert got.std == pytest.approx(expected[KEY_METRIC_ISC_STD], rel=1e-9)


@pytest.mark.parity
def test_equals_torch_fidelity_with_other_splits_seed_and_no_shuffle():
    logits = _logits(301, seed=3)
    for kwargs, ours in [
        (dict(splits=7, shuffle=True, rng_seed=5), dict(splits=7, shuffle=True, seed=5)),
        (dict(splits=4, shuffle=False, rng_seed=2020), dict(splits=4, shuffle=False)),
    ]:
        expected = isc_features_to_metric(logits, **kwargs)
        got = inception_score(logits, **ours)
        assert got.mean == pytest.approx(expected[KEY_METRIC_ISC_MEAN], rel=1e-12)
        assert got.std == pytest.approx(expected[KEY_METRIC_ISC_STD], rel=1e-9)


def test_shuffle_changes_the_splits():
    # Rows sorted by predicted class: unshuffled splits each see few classes.
    logits = torch.zeros(200, 10)
    logits[torch.arange(200), torch.arange(200) // 20] = 8.0
    assert inception_score(logits, shuffle=False).mean < inception_score(logits).mean - 1.0


def test_numpy_and_torch_inputs_agree():
    logits = _logits(120, c=50, seed=1)
    assert inception_score(logits) == inception_score(logits.numpy())


def test_identical_predictions_score_exactly_one():
    logits = np.tile(np.random.default_rng(2).standard_normal(30), (40, 1))
    result = inception_score(logits, splits=4)
    assert result.values == pytest.approx([1.0] * 4, abs=1e-12)
    assert result.std == pytest.approx(0.0, abs=1e-12)


def test_confident_distinct_predictions_score_the_number_of_classes():
    # Each split holds one confident prediction per class: KL = log C, so IS = C.
    c = 12
    logits = np.full((3 * c, c), -60.0)
    logits[np.arange(3 * c), np.arange(3 * c) % c] = 60.0
    result = inception_score(logits, splits=3, shuffle=False)
    assert result.values == pytest.approx([c] * 3, rel=1e-9)


def test_two_kinds_of_predictions_match_the_closed_form():
    p1, p2 = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
    q = (p1 + p2) / 2
    kl = lambda p: np.sum(p * np.log(p / q))  # noqa: E731
    expected = np.exp((kl(p1) + kl(p2)) / 2)
    logits = np.log(np.array([p1, p2] * 10))
    assert inception_score(logits, splits=1).mean == pytest.approx(expected, rel=1e-12)


def test_mean_and_population_std_summarise_the_split_values():
    result = inception_score(_logits(100, c=40, seed=4, scale=2.0), splits=5)
    assert isinstance(result, ScoreWithSpread)
    assert result.parts == 5 and result.subset_size == 20
    assert result.mean == pytest.approx(np.mean(result.values), rel=1e-15)
    assert result.std == pytest.approx(np.std(result.values, ddof=0), rel=1e-12)


def test_extreme_logits_do_not_give_nan():
    # A class no sample predicts underflows to p = 0 everywhere; its KL term must be 0, not NaN.
    logits = np.zeros((20, 5))
    logits[:, 4] = -1e4
    logits[np.arange(20), np.arange(20) % 4] = 50.0
    assert inception_score(logits, splits=1, shuffle=False).mean == pytest.approx(4.0, rel=1e-9)


def test_fewer_rows_than_splits_is_refused():
    with pytest.raises(BadInputError, match="splits"):
        inception_score(_logits(9, c=5), splits=10)


@pytest.mark.parametrize("bad", [np.full((20, 5), np.nan), np.zeros((20,)), np.zeros((0, 5))])
def test_malformed_logits_are_refused(bad):
    with pytest.raises(BadInputError, match="logits"):
        inception_score(bad, splits=2)


def test_probabilities_instead_of_logits_warn():
    probs = torch.softmax(_logits(40, c=10), dim=1)
    with pytest.warns(FidkitWarning, match="probabilities"):
        inception_score(probs, splits=2)
