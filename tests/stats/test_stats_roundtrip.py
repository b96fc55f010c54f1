"""Statistics of every registered network round-trip: ``compute_stats`` -> ``evaluate(stats)`` and
``save`` -> ``evaluate(file)``, and so do a user's own network's (the README's ``custom_extractor`` recipe).

The feature space a statistic belongs to is recorded, never re-derived from the network's identity (which differs
from the registry name for Inception, I3D and VideoMAE-v2).  What is tested here is the bookkeeping, not the
networks: each registered spec keeps its name, identity, taps and preprocessing, but its network is replaced by a
cheap deterministic projection (loading a real ViT-g per test would cost minutes).  The expected distance is
computed independently, from the two sides' features with numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import fidkit
from fidkit.extractors import base
from fidkit.stats.reference import Reference

from conftest import moving_clips, smooth_images


class _Projection(torch.nn.Module):
    """Pools the prepared input to 48 numbers and projects them to each tap's width (fixed seed)."""

    def __init__(self, spec: base.ExtractorSpec):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.proj = {t.name: torch.randn(48, t.dim, generator=g, dtype=torch.float64) for t in spec.taps}

    def forward(self, x, taps):
        pooled = torch.nn.functional.adaptive_avg_pool1d(x.reshape(x.shape[0], 1, -1).double(), 48)[:, 0]
        pooled = pooled + 0.1 * pooled ** 2  # not linear in the pixels
        return {t: (pooled @ self.proj[t]).float() for t in taps}


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    """Replace one registered network by :class:`_Projection`, under its own name and identity."""
    saved = dict(base._REGISTRY), dict(base._ALIASES)

    def install(name: str) -> tuple[base.ExtractorSpec, str]:
        spec = base.get_spec(name)
        fake = dataclasses.replace(spec, build=lambda state, source, s=spec: _Projection(s),
                                   read_weights=lambda path: {})
        base.register(fake, replace=True)
        weights = tmp_path / f"{spec.name}-stand-in.pth"
        weights.write_bytes(b"not the published file")
        return fake, str(weights)

    yield install
    base._REGISTRY.clear(), base._REGISTRY.update(saved[0])
    base._ALIASES.clear(), base._ALIASES.update(saved[1])


def _sources(spec: base.ExtractorSpec):
    if spec.modality == "video":
        return moving_clips(6, 16, 32, 32, seed=1), moving_clips(7, 16, 32, 32, seed=2)
    return smooth_images(6, 40, seed=1), smooth_images(7, 40, seed=2)


def _fd_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature sets from scratch: eigenvalues of sqrt(Sa) Sb sqrt(Sa)."""
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None)).sum()
    return float(((ma - mb) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * tr)


def _only_fd(result) -> float:
    fds = {k: v for k, v in result.values.items() if (k in ("fid", "fvd") or k.startswith("fd_"))
           and not k.endswith(("_mean_term", "_cov_term"))}
    assert len(fds) == 1, fds
    return next(iter(fds.values()))


@pytest.mark.parametrize("name", [s.name for s in base.specs() if not s.name.startswith("custom")])
def test_every_registered_network_round_trips(name, stand_in, tmp_path):
    spec, weights = stand_in(name)
    real, fake = _sources(spec)
    stats = fidkit.compute_stats(real, extractor=name, weights=weights, device="cpu")
    assert stats.space == spec.space(spec.defaults["embedding"])

    direct = fidkit.evaluate(real, fake, metrics="fd", features=name, weights={name: weights}, device="cpu")
    from_stats = fidkit.evaluate(stats, fake, metrics="fd", features=name, weights={name: weights}, device="cpu")
    path = stats.save(tmp_path / "stats.npz")
    from_file = fidkit.evaluate(str(path), fake, metrics="fd", features=name, weights={name: weights},
                                device="cpu")
    loaded = fidkit.FeatureStats.load(path)
    assert loaded.space == stats.space
    assert loaded.provenance.space == stats.space

    # the expected value, from the stand-in's features and numpy alone
    net = _Projection(spec)
    prep = spec.variant(None)
    tap = spec.defaults["embedding"]
    feats = [net(torch.stack([prep.prepare(x) for x in side]), [tap])[tap].double().numpy() for side in (real, fake)]
    expected = _fd_numpy(*feats)
    for r in (direct, from_stats, from_file):
        assert _only_fd(r) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_files_without_a_recorded_space_still_load(tmp_path):
    """Statistics written before the space was recorded: the space comes from an alias table of identities."""
    for spec in base.specs():
        tap = spec.defaults["embedding"]
        prov = dataclasses.replace(spec.provenance("0" * 64, tap, spec.default_preprocessing), space=None)
        x = np.random.default_rng(0).normal(size=(5, 3))
        s = fidkit.FeatureStats.from_features(x, prov)
        assert s.space == spec.space(tap), spec.name
        # and through files of the old layout: no space in the provenance JSON, and the arrays stored under the
        # key fidkit then derived (the identity: ``i3d-kinetics400/logits``), with per-sample features beside
        old_key = f"{'inception' if spec.name == 'inception' else spec.identity}/{tap}"
        path = Reference({old_key: s}, {old_key: x.astype(np.float32)}).save(tmp_path / f"{spec.name}.npz")
        ref = Reference.load(path)
        assert sorted(ref.stats) == sorted(ref.features) == [spec.space(tap)]
        assert fidkit.FeatureStats.load(path).space == spec.space(tap)


def test_readme_custom_extractor_recipe_round_trips(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.AdaptiveAvgPool2d(2),
                                 torch.nn.Flatten(), torch.nn.Linear(32, 16))

    def prepare(u8):
        return torch.nn.functional.interpolate(u8.float() / 255, size=(32, 32), mode="bilinear",
                                               align_corners=False)

    fidkit.custom_extractor("swav", module, dim=16, size=32, prepare=prepare)
    real, fake = smooth_images(20, 40, seed=1), smooth_images(22, 40, seed=2)
    direct = fidkit.evaluate(real, fake, metrics="fd,kd", features="swav", device="cpu")
    stats = fidkit.compute_stats(real, extractor="swav", device="cpu")
    path = stats.save(tmp_path / "swav.npz")
    via_stats = fidkit.evaluate(stats, fake, metrics="fd", features="swav", device="cpu")
    via_file = fidkit.evaluate(str(path), fake, metrics="fd", features="swav", device="cpu")
    with torch.no_grad():
        feats = [module(prepare(torch.from_numpy(x).permute(0, 3, 1, 2))).double().numpy() for x in (real, fake)]
    expected = _fd_numpy(*feats)
    for r in (direct, via_stats, via_file):
        assert r["fd_swav"] == pytest.approx(expected, rel=1e-5)
