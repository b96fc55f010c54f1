"""The request is resolved once: one plan, one preprocessing object per network, one provenance per feature
space, one comparability check, whatever the front end; run options are validated by one rule for every
source kind."""

from __future__ import annotations

import numpy as np
import pytest

import fidkit
from fidkit.engine import plan as plan_module
from fidkit.errors import BadInputError
from fidkit.extractors import base
from fidkit.stats import provenance as provenance_module

from conftest import smooth_images, write_folder


@pytest.fixture
def counted(monkeypatch):
    counts = {"plan": 0, "variant": 0, "provenance": {}, "check": 0}
    make_plan, variant, spec_provenance = plan_module.make_plan, base.ExtractorSpec.preprocessing_named, \
        base.ExtractorSpec.provenance
    check = provenance_module.Provenance.check_comparable

    def counting_plan(*a, **k):
        counts["plan"] += 1
        return make_plan(*a, **k)

    def counting_variant(self, name=None):
        counts["variant"] += 1
        return variant(self, name)

    def counting_provenance(self, weights_sha256, tap, preprocessing, source=None):
        key = self.space(tap)
        counts["provenance"][key] = counts["provenance"].get(key, 0) + 1
        return spec_provenance(self, weights_sha256, tap, preprocessing, source)

    def counting_check(self, other, *, force=False):
        counts["check"] += 1
        return check(self, other, force=force)

    import fidkit.request as request_module
    monkeypatch.setattr(request_module, "make_plan", counting_plan)
    monkeypatch.setattr(base.ExtractorSpec, "preprocessing_named", counting_variant)
    monkeypatch.setattr(base.ExtractorSpec, "provenance", counting_provenance)
    monkeypatch.setattr(provenance_module.Provenance, "check_comparable", counting_check)
    return counts


@pytest.mark.slow
def test_one_evaluate_resolves_each_preprocessing_once_and_one_provenance_per_space(weights, counted, tmp_path):
    real = write_folder(tmp_path / "real", smooth_images(6, 40, seed=1))
    fake = smooth_images(7, 40, seed=2)
    r = fidkit.evaluate(real, fake, metrics="fid,kid", weights=weights, device="cpu", kid_subsets=2,
                        kid_subset_size=3)
    assert np.isfinite(r["fid"])
    assert counted["plan"] == 1
    assert counted["variant"] == 1                       # one network, one preprocessing name turned into one object
    assert counted["provenance"] == {"inception/pool3": 1}
    assert counted["check"] == 1                          # both sides, one space: one check, before the pass


@pytest.mark.slow
def test_given_statistics_are_checked_once(weights, counted, tmp_path):
    stats = fidkit.compute_stats(smooth_images(6, 40, seed=1), weights=weights, device="cpu")
    counted.update(plan=0, variant=0, provenance={}, check=0)
    r = fidkit.evaluate(stats, smooth_images(7, 40, seed=2), metrics="fid", weights=weights, device="cpu")
    assert np.isfinite(r["fid"])
    assert counted["check"] == 1 and counted["plan"] == 1 and counted["provenance"] == {"inception/pool3": 1}
    # two statistics: no network, no provenance built, one check
    counted.update(plan=0, variant=0, provenance={}, check=0)
    fidkit.evaluate(stats, stats, metrics="fid")
    assert counted["provenance"] == {} and counted["check"] == 1


@pytest.mark.parametrize("value_range", [(0, 2), (1, 0), (0,), "0,1"])
def test_a_bad_value_range_is_refused_for_every_source_kind(value_range, tmp_path, weights):
    folder = write_folder(tmp_path / "imgs", smooth_images(3, 32, seed=0))
    for source in (folder, smooth_images(3, 32, seed=0), [smooth_images(3, 32, seed=0)]):
        with pytest.raises(BadInputError, match="value_range"):
            fidkit.evaluate(source, source, metrics="fid", weights=weights, value_range=value_range)
        with pytest.raises(BadInputError, match="value_range"):
            fidkit.Evaluator("fid", reference=source, weights=weights, value_range=value_range)
        with pytest.raises(BadInputError, match="value_range"):
            fidkit.compute_stats(source, weights=weights, value_range=value_range)


@pytest.mark.parametrize("keywords, message", [
    (dict(batch_size=0), "batch_size must be an integer of at least 1"),
    (dict(workers=0), "workers must be an integer of at least 1"),
    (dict(limit=-3), "limit must be an integer of at least 1"),
    (dict(crop="left"), "crop='left'"),
    (dict(device="meta"), "device 'meta'"),
    (dict(layout="NHWC"), "layout='NHWC'"),
    (dict(kid_subset=3), "unknown option"),
])
def test_run_options_are_validated_before_any_work(keywords, message, tmp_path):
    folder = write_folder(tmp_path / "imgs", smooth_images(3, 32, seed=0))
    for call in (lambda: fidkit.evaluate(folder, folder, metrics="fid", **keywords),
                 lambda: fidkit.Evaluator("fid", **keywords),
                 lambda: fidkit.compute_reference(folder, **keywords)):
        with pytest.raises(BadInputError, match=message):
            call()


@pytest.mark.slow
def test_run_options_object_equals_keywords(weights):
    a, b = smooth_images(5, 32, seed=1), smooth_images(6, 32, seed=2)
    run = fidkit.RunOptions(device="cpu", batch_size=2)
    assert fidkit.evaluate(a, b, metrics="fid", weights=weights, run=run)["fid"] == \
        fidkit.evaluate(a, b, metrics="fid", weights=weights, device="cpu", batch_size=2)["fid"]


def _tiny_network(name: str = "tiny-net"):
    import torch
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 5))
    fidkit.custom_extractor(name, module, dim=5, size=16)
    return name


def test_features_names_networks_everywhere_and_the_old_meaning_is_deprecated(tmp_path, capsys):
    """One word per concept: ``features`` names the networks (evaluate, compute_reference, the CLI); keeping
    per-sample embeddings is ``keep_features`` (``--keep-features``)."""
    from fidkit.cli import main
    net = _tiny_network()
    images = smooth_images(6, 20, seed=3)
    new = fidkit.compute_reference(images, features=net, keep_features=True, device="cpu")
    with pytest.warns(DeprecationWarning, match="keep_features"):
        old = fidkit.compute_reference(images, features=True, extractors=net, device="cpu")
    assert sorted(new.features) == sorted(old.features) == [f"{net}/embedding"]
    np.testing.assert_array_equal(new.features[f"{net}/embedding"], old.features[f"{net}/embedding"])
    with pytest.raises(BadInputError, match="networks once"):
        fidkit.compute_reference(images, features=net, extractors=net)

    folder = write_folder(tmp_path / "imgs", images)
    assert main(["stats", str(folder), "-o", str(tmp_path / "a.npz"), "--features", net, "--keep-features"]) == 0
    assert main(["stats", str(folder), "-o", str(tmp_path / "b.npz"), "--extractors", net, "--features"]) == 0
    assert "now --keep-features" in capsys.readouterr().err
    for f in ("a.npz", "b.npz"):
        ref = fidkit.Reference.load(tmp_path / f)
        assert sorted(ref.features) == [f"{net}/embedding"], f
    assert main(["stats", str(folder), "-o", str(tmp_path / "c.npz"), "--extractors", net,
                 "--features", net]) == 2


def test_preprocessing_is_the_one_name_and_mode_still_works(tmp_path, capsys):
    """One concept, one name: ``preprocessing=`` / ``--preprocessing``; ``mode=`` / ``--mode`` are the older
    spellings (with a deprecation warning in Python)."""
    from fidkit.cli import main
    net = _tiny_network("tiny-prep")
    images = smooth_images(5, 20, seed=4)
    new = fidkit.compute_stats(images, extractor=net, preprocessing="custom", device="cpu")
    with pytest.warns(DeprecationWarning, match="preprocessing="):
        old = fidkit.compute_stats(images, extractor=net, mode="custom", device="cpu")
    np.testing.assert_array_equal(new.mean, old.mean)
    assert new.provenance.mode == old.provenance.mode == "custom"
    with pytest.raises(BadInputError, match="preprocessing= only"):
        fidkit.compute_stats(images, extractor=net, preprocessing="custom", mode="custom")
    with pytest.raises(BadInputError, match="unknown preprocessing"):
        fidkit.evaluate(images, images, metrics="fd", features=net, preprocessing="nope")
    folder = write_folder(tmp_path / "imgs", images)
    for flag in ("--preprocessing", "--mode"):
        assert main(["stats", str(folder), "-o", str(tmp_path / f"{flag}.npz"), "--features", net, flag,
                     "custom"]) == 0
        assert fidkit.FeatureStats.load(tmp_path / f"{flag}.npz").provenance.mode == "custom"
