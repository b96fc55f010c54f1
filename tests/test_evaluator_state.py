"""An Evaluator state whose sample counts were changed is refused, naming the file it was read from."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fidkit import Evaluator
from fidkit.errors import BadInputError
from fidkit.extractors.runtime import Extractor

from conftest import smooth_images

N = 12


def _features(self, batch, taps=None):
    f = F.adaptive_avg_pool2d(batch.float(), 27).flatten(1)[:, :2048]
    return {t: f for t in (taps or ("pool3",))}


@pytest.fixture
def saved(tmp_path, weights, monkeypatch):
    monkeypatch.setattr(Extractor, "__call__", _features)

    def make(metrics):
        ev = Evaluator(metrics, weights=weights, device="cpu", kid_subsets=2, kid_subset_size=5)
        ev.update(torch.from_numpy(smooth_images(N, 16, seed=1)).permute(0, 3, 1, 2), real=True)
        ev.update(torch.from_numpy(smooth_images(N, 16, seed=2)).permute(0, 3, 1, 2))
        path = tmp_path / "ev.pt"
        ev.save(path)
        return ev, path
    return make


def _counts(side, n, indices=True):
    side["n"] = n
    for s in side["stats"].values():
        s["n"] = n
    if indices:
        idx = side["indices"]
        side["indices"] = torch.cat([idx, torch.full((max(0, n - len(idx)),), -1, dtype=torch.int64)])[:n]


TAMPERS = {
    "n only": lambda side: side.__setitem__("n", 5000),
    "statistics n only": lambda side: [s.__setitem__("n", 5000) for s in side["stats"].values()],
    "n and statistics n": lambda side: _counts(side, 5000, indices=False),
    "fewer samples than the moments hold": lambda side: _counts(side, 5),   # rank 11 from 5 samples
    "two samples": lambda side: _counts(side, 2),
    "one sample": lambda side: _counts(side, 1),    # a single sample has a zero co-moment
    "no samples": lambda side: _counts(side, 0),    # no samples: zero mean and co-moment
}


@pytest.mark.parametrize("side_name", ["fake", "real"])
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_a_state_whose_counts_were_changed_is_refused_naming_the_file(tamper, side_name, saved, weights):
    _, path = saved(("fid",))
    state = torch.load(path, weights_only=True)
    TAMPERS[tamper](state[side_name])
    torch.save(state, path)
    fresh = Evaluator(("fid",), weights=weights, device="cpu", kid_subsets=2, kid_subset_size=5)
    with pytest.raises(BadInputError) as e:
        fresh.load(path)
    assert str(path) in str(e.value) and ("generated" if side_name == "fake" else "real") in str(e.value)
    assert fresh.n == 0  # a refused state leaves the evaluator as it was
    with pytest.raises(BadInputError):  # the dict itself too, without a file to name
        fresh.load_state_dict(state)


def test_kept_feature_rows_must_match_the_count(saved, weights):
    _, path = saved(("fid", "kid"))
    state = torch.load(path, weights_only=True)
    _counts(state["fake"], N + 3)  # statistics and indices agree, the kept features (KID) do not
    torch.save(state, path)
    with pytest.raises(BadInputError, match="inconsistent sample counts") as e:
        Evaluator(("fid", "kid"), weights=weights, device="cpu", kid_subsets=2, kid_subset_size=5).load(path)
    assert str(path) in str(e.value)


def test_an_untouched_state_loads_and_gives_the_same_result(saved, weights):
    ev, path = saved(("fid", "kid"))
    fresh = Evaluator(("fid", "kid"), weights=weights, device="cpu", kid_subsets=2, kid_subset_size=5)
    fresh.load(path)
    assert fresh.n == N
    a, b = ev.compute(), fresh.compute()
    assert a.values == b.values


@pytest.mark.parametrize("n,rank,ok", [(0, 0, True), (1, 0, True), (2, 1, True), (5, 4, True), (5, 5, False),
                                        (3, 7, False), (40, 30, True)])
def test_the_rank_check_of_moments_against_a_count(n, rank, ok):
    from fidkit.engine.state import moments_contradict_count
    rng = np.random.default_rng(n + rank)
    x = rng.standard_normal((rank + 1, 32)) * 10 + 50 if rank else np.full((1, 32), 50.0)
    mean = x.mean(0)
    m2 = (x - mean).T @ (x - mean)  # rank = number of rows - 1 (independent of fidkit's accumulation)
    if n == 0:
        mean, m2 = np.zeros(32), np.zeros((32, 32))
    assert (moments_contradict_count(n, mean, m2) == "") == ok
