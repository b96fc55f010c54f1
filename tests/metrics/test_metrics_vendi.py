"""The Vendi score, a metric added as one declaration (src/fidkit/metrics/vendi.py): against the ``vendi-score``
package on the same features, through every front end that the declaration alone should reach."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fidkit
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.metrics import vendi as vendi_module
from fidkit.metrics.vendi import vendi_score

vendi = pytest.importorskip("vendi_score.vendi")
pytestmark = pytest.mark.parity


def _package(x: np.ndarray, q: float = 1.0) -> float:
    """The package's score; its kernel route (``score_K``) for the Shannon order, its dual route otherwise
    (``score_X`` ignores ``q``)."""
    x = np.asarray(x, dtype=np.float64)
    if q == 1:
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        return float(vendi.score_K(xn @ xn.T))
    return float(vendi.score_dual(x, q=q))


@pytest.mark.parametrize("n, d", [(50, 8), (40, 200), (300, 32)])
@pytest.mark.parametrize("q", [1.0, 0.5, 2.0])
def test_equals_the_vendi_score_package(n, d, q):
    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)  # correlated, off-centre
    # float64 routes through different eigen-solvers (d x d here, n x n in the package): at q < 1 the rounding
    # noise of the zero eigenvalues (rank n < d) enters through p**q, so agreement is ~1e-9, BLAS-order dependent
    assert vendi_score(x, q=q) == pytest.approx(_package(x, q), rel=1e-7)
    assert vendi_score(x.astype(np.float32), q=q) == pytest.approx(_package(x.astype(np.float32), q), rel=1e-5)


def test_closed_forms():
    x = np.eye(7)[np.arange(21) % 7] * 3.0  # 7 orthogonal directions, each three times: exactly 7 distinct
    assert vendi_score(x) == pytest.approx(7.0, rel=1e-12)
    assert vendi_score(np.tile([[1.0, 2.0, 3.0]], (10, 1))) == pytest.approx(1.0, rel=1e-12)


def test_blocks_do_not_change_the_value(monkeypatch):
    x = np.random.default_rng(3).normal(size=(103, 16))
    whole = vendi_score(x)
    monkeypatch.setattr(vendi_module, "_BLOCK", 10)
    assert vendi_score(x) == pytest.approx(whole, rel=1e-12)


def test_bad_input_is_named():
    with pytest.raises(BadInputError, match="all zeros"):
        vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(BadInputError, match="vendi_q must be a number of at least 0"):
        fidkit.MetricOptions(vendi_q=-1.0)


def _swav():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.AdaptiveAvgPool2d(2),
                                 torch.nn.Flatten(), torch.nn.Linear(32, 12))
    fidkit.custom_extractor("vendi-net", module, dim=12, size=32)
    return module


def test_every_front_end_reaches_it_from_the_declaration(tmp_path, capsys):
    from conftest import smooth_images
    module = _swav()
    real, fake = smooth_images(8, 40, seed=1), smooth_images(30, 40, seed=2)
    with torch.no_grad():
        x = torch.from_numpy(fake).permute(0, 3, 1, 2).float() / 255
        feats = module(torch.nn.functional.interpolate(x, (32, 32), mode="bilinear", antialias=True,
                                                        align_corners=False)).double().numpy()
    expected = _package(feats)
    # evaluate: the result is named after the space, the label comes from the declaration
    r = fidkit.evaluate(real, fake, metrics="vendi,fd", features="vendi-net", device="cpu")
    assert r["vendi_vendi_net"] == pytest.approx(expected, rel=1e-5)
    assert r.labels["vendi_vendi_net"] == "Vendi score (vendi-net)"
    # the declared option as a keyword
    r2 = fidkit.evaluate(real, fake, metrics="vendi_vendi_net", features="vendi-net", device="cpu", vendi_q=2.0)
    assert r2["vendi_vendi_net"] == pytest.approx(_package(feats, 2.0), rel=1e-5)
    assert r2.options["vendi_q"] == 2.0
    # the online evaluator
    ev = fidkit.Evaluator("vendi", features="vendi-net", device="cpu")
    ev.update(real, real=True)
    for i in range(0, len(fake), 7):
        ev.update(fake[i:i + 7])
    assert ev.compute()["vendi_vendi_net"] == pytest.approx(expected, rel=1e-5)

    # the CLI, on precomputed features: the flag comes from the declared option
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(20, 6)))
    np.save(tmp_path / "b.npy", feats.astype(np.float32))
    assert main(["eval", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metrics", "vendi",
                 "--vendi-q", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["vendi"] == pytest.approx(_package(feats.astype(np.float32), 0.5), rel=1e-5)
    assert main(["eval", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metrics", "vendi"]) == 0
    assert "Vendi score:" in capsys.readouterr().out.replace("  ", "")
    assert main(["eval", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metrics", "vendi",
                 "--vendi-q", "-1"]) == 2
    assert "vendi_q must be a number of at least 0" in capsys.readouterr().err
