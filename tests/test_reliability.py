"""Points a hostile review found (issue 9) that this change fixes: each test is one case."""

import json

import numpy as np
import pytest

import fidkit
from fidkit.cli import main
from fidkit.errors import WeightsUnavailableError
from fidkit.extractors import Extractor, weights as W

from helpers import smooth_images


@pytest.mark.slow
def test_negative_value_range_on_the_command_line(tmp_path, weights, capsys):
    """``--value-range -1,1``, as ``--help`` shows it, used to be read as an unknown option."""
    imgs = smooth_images(6, 32, seed=3).astype(np.float32) / 127.5 - 1
    np.save(tmp_path / "a.npy", imgs)
    np.save(tmp_path / "b.npy", imgs[::-1].copy())
    code = main(["fid", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--value-range", "-1,1", "--weights",
                 weights, "--device", "cpu", "--json", "--quiet"])
    assert code == 0
    expected = fidkit.fid(np.round((imgs + 1) * 127.5).astype(np.uint8),
                          np.round((imgs[::-1] + 1) * 127.5).astype(np.uint8), weights=weights, device="cpu")
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(expected.fid, rel=1e-9)


@pytest.mark.slow
def test_non_standard_weights_are_flagged_in_the_result(folders, weights):
    a, b = folders
    r = fidkit.evaluate(a, b, metrics="kid", weights=weights, device="cpu", kid_subset_size=5, kid_subsets=2)
    space = r.to_dict()["feature_spaces"]["inception/pool3"]
    assert space["published_weights"] is False and space["weights_sha256"] == W.sha256_of(weights)
    assert any("non-standard inception weights" in w for w in r.warnings)


@pytest.mark.slow
def test_kernel_only_runs_from_a_reference_file_carry_provenance(folders, weights, tmp_path):
    a, b = folders
    fidkit.compute_reference(a, features=True, weights=weights, device="cpu").save(tmp_path / "ref.npz")
    r = fidkit.evaluate(tmp_path / "ref.npz", b, metrics="kid,pr", weights=weights, device="cpu",
                        kid_subset_size=5, kid_subsets=2)
    assert r.provenance.weights_sha256 == W.sha256_of(weights)
    assert r.to_dict()["extractor"] == "inception-2015-12-05"


@pytest.mark.slow
def test_files_without_provenance_say_which_mode_matches_which_library(folders, weights, tmp_path):
    a, b = folders
    s = fidkit.compute_stats(a, weights=weights, device="cpu")
    np.savez(tmp_path / "pytorch_fid.npz", mu=s.mean, sigma=s.cov)
    r = fidkit.fid(tmp_path / "pytorch_fid.npz", b, weights=weights, device="cpu")
    note = next(w for w in r.warnings if "carry no provenance" in w)
    assert "pytorch-fid" in note and "--preprocessing pytorch" in note and "--preprocessing clean" in note


def test_cached_files_are_checked_against_the_full_published_hash(isolated_cache, weights, monkeypatch):
    """pytorch-fid's file is byte-identical to torch-fidelity's: both are pinned by the full sha256, not by the
    8-character prefix in their names."""
    cached = isolated_cache / "weights" / "pt_inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(open(weights, "rb").read())
    monkeypatch.setattr(W, "sha256_of", lambda path: "6726825d" + "0" * 56)  # right prefix, wrong file
    with pytest.raises(WeightsUnavailableError, match="does not match the published hash"):
        Extractor.get("inception", device="cpu")


@pytest.mark.slow
def test_warnings_point_at_the_callers_line(folders, weights):
    a, b = folders
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fidkit.fid(a, b, weights=weights, device="cpu")  # N < 2048: warned
    ours = [w for w in caught if issubclass(w.category, fidkit.FidkitWarning)]
    assert ours and all(w.filename == __file__ for w in ours)


@pytest.mark.slow
def test_non_square_images_warn_once_and_center_crop_equals_cropped_files(tmp_path, weights):
    from helpers import write_folder
    from fidkit.errors import IncomparableStatsError
    wide_a, wide_b = smooth_images(5, (24, 40), seed=1), smooth_images(6, (24, 40), seed=2)
    a, b = write_folder(tmp_path / "a", wide_a), write_folder(tmp_path / "b", wide_b)
    r = fidkit.fid(a, b, weights=weights, device="cpu")
    assert sum("are not square" in w for w in r.warnings) == 2  # one per source, not one per image
    cropped = fidkit.fid(a, b, weights=weights, device="cpu", crop="center")
    sq_a = write_folder(tmp_path / "sa", wide_a[:, :, 8:32])  # (40 - 24) // 2 = 8
    sq_b = write_folder(tmp_path / "sb", wide_b[:, :, 8:32])
    assert cropped.fid == pytest.approx(fidkit.fid(sq_a, sq_b, weights=weights, device="cpu").fid, rel=1e-9)
    assert cropped.mode == "tf+center-crop" and cropped.provenance.mode == "tf+center-crop"
    stats = fidkit.compute_stats(a, weights=weights, device="cpu")
    with pytest.raises(IncomparableStatsError, match="'tf' vs 'tf\\+center-crop'"):
        fidkit.fid(stats, b, weights=weights, device="cpu", crop="center")
