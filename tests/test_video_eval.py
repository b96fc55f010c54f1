"""FVD end to end: video sources -> I3D -> Fréchet distance, in the API, the CLI, the Evaluator and under
torch.distributed, with clip sampling in the provenance.

Expected values come from content-debiased FVD's own pipeline (``cd-fvd``: its ``preprocess_i3d``, its
``InceptionI3d`` with the same random weights) and a float64 closed form; file sources are checked against the
arrays they were written from (lossless FFV1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fidkit
from fidkit.metrics.frechet import frechet_distance_from_moments

from helpers import moving_clips
from test_video_sources import write_video

pytorch_i3d = pytest.importorskip("cdfvd.third_party.i3d.pytorch_i3d")
from cdfvd.third_party.i3d.utils import preprocess_i3d  # noqa: E402

KID = dict(kid_subsets=3, kid_subset_size=4)


@pytest.fixture(scope="module")
def clips():
    return moving_clips(5, 16, 36, 44, seed=1), moving_clips(6, 18, 36, 44, seed=2)


def _ntchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 1, 4, 2, 3)


def _cd_fvd_features(clips: np.ndarray, weights: str) -> np.ndarray:
    net = pytorch_i3d.InceptionI3d(400, in_channels=3)
    net.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        return net.eval()(preprocess_i3d(clips)).double().numpy()


def _fd(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


@pytest.fixture(scope="module")
def folders(clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for side, arr in zip("ab", clips):
        for i, clip in enumerate(arr):
            write_video(root / side / f"v{i:02d}.mkv", clip, "ffv1", "bgr0")
    return root / "a", root / "b"


@pytest.mark.parity
def test_fvd_equals_cd_fvds_pipeline(clips, i3d_weights):
    a, b = clips
    r = fidkit.evaluate(_ntchw(a), _ntchw(b), metrics="fvd", mode="cd-fvd", weights=i3d_weights, device="cpu",
                        batch_size=4)
    expected = _fd(_cd_fvd_features(a[:, :16], i3d_weights), _cd_fvd_features(b[:, :16], i3d_weights))
    assert r["fvd"] == pytest.approx(expected, rel=1e-4)
    assert list(r.values) == ["fvd", "fvd_mean_term", "fvd_cov_term"] and (r.n_a, r.n_b) == (5, 6)
    space = r.to_dict()["feature_spaces"]["i3d/logits"]
    assert space["clip"] == "16 frames, stride 1, from frame 0" and space["preprocessing"] == "cd-fvd"


@pytest.mark.slow
def test_files_stats_and_cli_equal_the_arrays(clips, folders, i3d_weights, tmp_path):
    a, b = clips
    direct = fidkit.evaluate(_ntchw(a), _ntchw(b), metrics="fvd,kvd", weights=i3d_weights, device="cpu", **KID)
    env = dict(os.environ, FIDKIT_I3D_WEIGHTS=i3d_weights)
    ref = tmp_path / "ref.npz"
    run = [sys.executable, "-m", "fidkit"]
    out = subprocess.run(run + ["stats", str(folders[0]), "-o", str(ref), "--extractors", "i3d", "--features",
                                "--device", "cpu", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spaces"]["i3d/logits"]["clip"] == "16 frames, stride 1, from frame 0"
    out = subprocess.run(run + ["eval", str(ref), str(folders[1]), "--metrics", "fvd,kvd", "--device", "cpu",
                                "--kid-subsets", "3", "--kid-subset-size", "4", "--json"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["fvd"] == pytest.approx(direct["fvd"], rel=1e-6)
    assert record["kvd"] == pytest.approx(direct["kvd"], rel=1e-5)
    # another clip sampling is another feature space: refused, naming the difference
    out = subprocess.run(run + ["eval", str(ref), str(folders[1]), "--metrics", "fvd", "--device", "cpu",
                                "--frame-stride", "1", "--clip-start", "2"], env=env, capture_output=True, text=True)
    assert out.returncode == 3 and "video clip sampling" in out.stderr
    text = subprocess.run(run + ["eval", str(ref), str(folders[1]), "--metrics", "fvd", "--device", "cpu"],
                          env=env, capture_output=True, text=True).stdout
    assert "FVD:" in text and "clip: 16 frames, stride 1, from frame 0" in text


@pytest.mark.slow
def test_evaluator_online_equals_offline(clips, i3d_weights, tmp_path):
    a, b = clips
    ref = fidkit.compute_reference(_ntchw(a), extractors="i3d", weights=i3d_weights, device="cpu")
    ref.save(tmp_path / "ref.npz")
    ev = fidkit.Evaluator("fvd", reference=tmp_path / "ref.npz", weights=i3d_weights, device="cpu",
                          value_range=(0, 1), batch_size=3)
    x = _ntchw(b).float() / 255
    ev.update(x[:4])
    ev.update(x[4:])
    online = ev.compute()
    offline = fidkit.evaluate(tmp_path / "ref.npz", _ntchw(b), metrics="fvd", weights=i3d_weights, device="cpu")
    assert online["fvd"] == pytest.approx(offline["fvd"], rel=1e-6)
    # the channels-first layout, declared, is the same videos
    ev2 = fidkit.Evaluator("fvd", reference=tmp_path / "ref.npz", weights=i3d_weights, device="cpu",
                           value_range=(0, 1), layout="NCTHW")
    ev2.update(x.permute(0, 2, 1, 3, 4))
    assert ev2.compute()["fvd"] == pytest.approx(offline["fvd"], rel=1e-6)
    # a saved state resumes only an evaluator of the same clip sampling
    other = fidkit.Evaluator("fvd", reference=tmp_path / "ref.npz", weights=i3d_weights, device="cpu",
                             clip={"length": 12}, force=True)
    with pytest.raises(fidkit.BadInputError, match="clip"):
        other.load_state_dict(ev2.state_dict())


def test_requests_that_mix_images_and_videos_or_misplace_options_are_refused(clips, i3d_weights):
    a, b = clips
    with pytest.raises(fidkit.BadInputError, match="either images or videos"):
        fidkit.evaluate(_ntchw(a), _ntchw(b), metrics="fid,fvd", weights=i3d_weights, device="cpu")
    with pytest.raises(fidkit.BadInputError, match="clip options"):
        fidkit.evaluate(_ntchw(a)[:, 0], _ntchw(b)[:, 0], metrics="fid", clip={"length": 8})
    with pytest.raises(fidkit.BadInputError, match="batch of images"):
        fidkit.evaluate(_ntchw(a)[:, 0], _ntchw(b), metrics="fvd", weights=i3d_weights, device="cpu")
    with pytest.raises(fidkit.BadInputError, match="clip length"):
        fidkit.evaluate(_ntchw(a), _ntchw(b), metrics="fvd", weights=i3d_weights, device="cpu",
                        clip={"length": 0})


@pytest.mark.slow
def test_a_too_short_video_is_named_and_skip_bad_leaves_it_out(clips, folders, i3d_weights, tmp_path):
    a, b = clips
    fake = tmp_path / "fake"
    for i, clip in enumerate(b[:4]):
        write_video(fake / f"v{i}.mkv", clip, "ffv1", "bgr0")
    write_video(fake / "short.mkv", b[4, :10], "ffv1", "bgr0")
    with pytest.raises(fidkit.BadInputError, match=r"short\.mkv: 10 frames"):
        fidkit.evaluate(folders[0], fake, metrics="fvd", weights=i3d_weights, device="cpu")
    r = fidkit.evaluate(folders[0], fake, metrics="fvd", weights=i3d_weights, device="cpu", skip_bad=True)
    assert r.n_b == 4 and any("short.mkv" in s for s in r.skipped[str(fake)])
    expected = fidkit.evaluate(_ntchw(a), _ntchw(b[:4]), metrics="fvd", weights=i3d_weights, device="cpu")
    assert r["fvd"] == pytest.approx(expected["fvd"], rel=1e-6)


def _distributed_worker(rank, world, init_file, out_dir, a, b, weights):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        r = fidkit.evaluate(a, b, metrics="fvd", weights=weights, device="cpu", distributed=True, batch_size=2)
        with open(os.path.join(out_dir, f"r{rank}.json"), "w") as f:
            json.dump({"fvd": r["fvd"], "n": [r.n_a, r.n_b]}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_processes_equal_one(folders, i3d_weights, tmp_path):
    a, b = (str(f) for f in folders)
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path), a, b, i3d_weights), nprocs=2,
             join=True)
    single = fidkit.evaluate(a, b, metrics="fvd", weights=i3d_weights, device="cpu")
    for rank in range(2):
        got = json.loads((tmp_path / f"r{rank}.json").read_text())
        assert got["n"] == [5, 6]
        assert got["fvd"] == pytest.approx(single["fvd"], rel=1e-6)


def _toy_video_sampler(seeds):
    z = fidkit.seeded_randn(seeds, 16, 3, 6, 6)                     # N x T x C x h x w latents
    frames = torch.nn.functional.interpolate(z.flatten(0, 1), size=32, mode="bilinear", align_corners=False)
    return (frames.tanh() * 0.5 + 0.5).view(len(seeds), 16, 3, 32, 32)


@pytest.mark.slow
def test_evaluate_generator_draws_videos(clips, i3d_weights, tmp_path):
    a, _ = clips
    fidkit.compute_reference(_ntchw(a), extractors="i3d", weights=i3d_weights, device="cpu").save(tmp_path / "r.npz")
    r = fidkit.evaluate_generator(_toy_video_sampler, n=5, batch_size=2, seed=3, reference=tmp_path / "r.npz",
                                  metrics="fvd", weights=i3d_weights, device="cpu", value_range=(0, 1))
    videos = _toy_video_sampler(fidkit.sample_seeds(3, range(5)))
    offline = fidkit.evaluate(tmp_path / "r.npz", videos, metrics="fvd", weights=i3d_weights, device="cpu",
                              value_range=(0, 1))
    assert r.n_b == 5 and r["fvd"] == pytest.approx(offline["fvd"], rel=1e-6)


@pytest.mark.slow
def test_center_crop_of_non_square_videos_and_what_the_warnings_say(clips, i3d_weights):
    a, b = clips                                                   # 36 x 44 frames
    squashed = fidkit.evaluate(_ntchw(a), _ntchw(b[:, :16]), metrics="fvd", weights=i3d_weights, device="cpu")
    text = " ".join(squashed.warnings)
    assert "5 of 5 videos in" in text and "not square" in text and "2,048 clips is FVD's usual N" in text
    cropped = fidkit.evaluate(_ntchw(a), _ntchw(b[:, :16]), metrics="fvd", weights=i3d_weights, device="cpu",
                              crop="center")
    by_hand = fidkit.evaluate(_ntchw(a[:, :, :, 4:40]), _ntchw(b[:, :16, :, 4:40]), metrics="fvd",
                              weights=i3d_weights, device="cpu")
    assert cropped["fvd"] == pytest.approx(by_hand["fvd"], rel=1e-9)
    assert cropped.to_dict()["feature_spaces"]["i3d/logits"]["preprocessing"] == "tf+center-crop"
