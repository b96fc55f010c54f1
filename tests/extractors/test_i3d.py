"""The FVD network (Inception-I3D, Kinetics-400) and its preprocessing, against content-debiased FVD.

Parity tests load the same random weights, written in cd-fvd's format by cd-fvd's own
``InceptionI3d(400)`` (``pip install cd-fvd==0.1.1``), into fidkit's network and into
cd-fvd's, and compare features; they are skipped when that package is missing.  The
``tf`` preprocessing is checked against torch-fidelity's TF1 bilinear resize, the
``cd-fvd`` one against cd-fvd's ``preprocess_i3d``, and FVD against cd-fvd's own
computation and the closed form.
"""

from __future__ import annotations

import inspect
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import fidkit
from fidkit.errors import BadInputError, WeightsUnavailableError
from fidkit.extractors import Extractor, get_spec
from fidkit.extractors.i3d import (
    MIN_FRAMES,
    InceptionI3D,
    Unit3D,
    max_pool_same,
    preprocess_cd_fvd,
    preprocess_tf,
    read_i3d_state_dict,
)
from fidkit.metrics.frechet import frechet_distance_from_moments
from fidkit.stats.moments import FeatureStats

from helpers import moving_clips, randomise_i3d as randomise

pytorch_i3d = pytest.importorskip("cdfvd.third_party.i3d.pytorch_i3d")
from cdfvd.fvd import cdfvd as CdFvd  # noqa: E402
from cdfvd.third_party.i3d.utils import load_i3d_model, preprocess_i3d  # noqa: E402
from cdfvd.utils.metric_utils import FeatureStats as CdFvdStats  # noqa: E402

FEATURE_TOL = 1e-4   # relative to the features' scale (largest magnitude)
SIZE = 224


@pytest.fixture(autouse=True)
def no_weights_from_the_environment(monkeypatch):
    monkeypatch.delenv("FIDKIT_I3D_WEIGHTS", raising=False)


def as_batch(clips: np.ndarray) -> torch.Tensor:
    """``N x T x H x W x 3`` numpy -> fidkit's uint8 video batch ``N x T x 3 x H x W``."""
    return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).contiguous()


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory) -> str:
    """Random weights saved from cd-fvd's own network: its exact key names, shapes and format."""
    net = pytorch_i3d.InceptionI3d(400, in_channels=3)
    randomise(net, seed=0)
    path = tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt"
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def reference(weights_path):
    """cd-fvd's network, loaded by cd-fvd's loader from the file."""
    return load_i3d_model(torch.device("cpu"), weights_path)


@pytest.fixture(scope="module")
def ours(weights_path) -> Extractor:
    return Extractor("i3d", weights=weights_path, device="cpu")


def run_reference(net, x: torch.Tensor) -> SimpleNamespace:
    """cd-fvd's logits of network inputs ``x``, and the output of its average pool taken on the way."""
    seen = {}
    hook = net.avg_pool.register_forward_hook(lambda m, i, o: seen.setdefault("pool", o))
    try:
        with torch.inference_mode():
            logits = net(x)
    finally:
        hook.remove()
    return SimpleNamespace(logits=logits, pool=seen["pool"].flatten(2).mean(2))


def run_ours(ext: Extractor, variant: str, batch: torch.Tensor) -> SimpleNamespace:
    x = ext.spec.variant(variant).prepare_many(batch)
    out = ext(x, taps=("logits", "pool"))
    return SimpleNamespace(logits=out["logits"], pool=out["pool"])


def tf1_reference_input(clips: np.ndarray) -> torch.Tensor:
    """The original FVD input, written out: torch-fidelity's TF1 bilinear resize of each frame, 2 x / 255 - 1."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
    n, t, h, w, _ = clips.shape
    frames = torch.from_numpy(clips.reshape(n * t, h, w, 3)).permute(0, 3, 1, 2).to(torch.float32)
    resized = interpolate_bilinear_2d_like_tensorflow1x(frames, size=(SIZE, SIZE), align_corners=False)
    return (2 * resized.view(n, t, 3, SIZE, SIZE) / 255 - 1).transpose(1, 2)


@pytest.fixture(scope="module")
def tf_features(ours, reference):
    """Three 16-frame clips (36 x 48: resized non-uniformly) through both networks with the tf preprocessing."""
    clips = moving_clips(3, 16, 36, 48, seed=1)
    return SimpleNamespace(ours=run_ours(ours, "tf", as_batch(clips)),
                           ref=run_reference(reference, tf1_reference_input(clips)))


@pytest.fixture(scope="module")
def cd_features(ours, reference):
    """Three 19-frame clips through fidkit with the cd-fvd preprocessing and through cd-fvd's own pipeline.
    19 frames: odd, and two time steps after the [2, 7, 7] pool, so the mean over time is exercised."""
    clips = moving_clips(3, 19, 40, 30, seed=2)
    return SimpleNamespace(ours=run_ours(ours, "cd-fvd", as_batch(clips)),
                           ref=run_reference(reference, preprocess_i3d(clips)))


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    tol = FEATURE_TOL * want.abs().max().item()
    # the random weights must make features depend on the clip far beyond the tolerance
    assert (want[0] - want[1:]).abs().max() > 100 * tol
    diff = (got - want).abs().max().item()
    print(f"max |fidkit - cd-fvd| = {diff:.2e} (tolerance {tol:.2e})")
    assert diff <= tol


# -- the network ------------------------------------------------------------------------------------------

@pytest.mark.parity
def test_features_equal_cd_fvd_with_the_tf_preprocessing(tf_features):
    assert tf_features.ours.logits.shape == (3, 400)
    assert_close(tf_features.ours.logits, tf_features.ref.logits)


@pytest.mark.parity
def test_features_equal_the_cd_fvd_pipeline_with_its_preprocessing(cd_features):
    assert_close(cd_features.ours.logits, cd_features.ref.logits)


@pytest.mark.parity
@pytest.mark.parametrize("which", ["tf", "cd"])
def test_pool_tap_is_the_average_pool_before_the_logits_averaged_over_time(which, tf_features, cd_features):
    f = tf_features if which == "tf" else cd_features
    assert f.ours.pool.shape == (3, 1024)
    assert_close(f.ours.pool, f.ref.pool)


@pytest.mark.parity
def test_same_padding_of_pools_and_strided_convolutions_equals_cd_fvd_at_every_size():
    g = torch.Generator().manual_seed(0)
    for kernel, stride in [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)),
                           ((3, 3, 3), (1, 1, 1)), ((2, 2, 2), (1, 1, 1)), ((4, 4, 4), (3, 3, 3))]:
        ref = pytorch_i3d.MaxPool3dSamePadding(kernel_size=kernel, stride=stride, padding=0)
        for n in range(1, 10):
            x = torch.rand(1, 2, n, n + 1, n + 2, generator=g)  # >= 0, as after a ReLU
            assert torch.equal(max_pool_same(x, kernel, stride), ref(x)), (kernel, stride, n)
    theirs = pytorch_i3d.Unit3D(3, 4, kernel_shape=[7, 7, 7], stride=(2, 2, 2)).eval()
    randomise(theirs, seed=1)
    mine = Unit3D(3, 4, 7, stride=2)
    mine.load_state_dict(theirs.state_dict())
    mine.eval()
    with torch.inference_mode():
        for t, h, w in [(8, 9, 10), (9, 12, 11), (1, 2, 3)]:
            x = torch.randn(1, 3, t, h, w, generator=g)
            want = theirs(x)
            assert torch.allclose(mine(x), want, rtol=0, atol=1e-5 * want.abs().max().item()), (t, h, w)


def test_clips_shorter_than_the_head_needs_are_refused(ours):
    short = torch.zeros(1, 3, MIN_FRAMES - 1, SIZE, SIZE)
    with pytest.raises(BadInputError, match=f"at least {MIN_FRAMES} frames"):
        ours(short)
    with pytest.raises(BadInputError, match="N x 3 x T"):
        ours(torch.zeros(1, 3, 16, 112, 112))


# -- preprocessing ----------------------------------------------------------------------------------------

@pytest.mark.parity
def test_tf_preprocessing_is_the_tf1_bilinear_resize_of_every_frame():
    clips = moving_clips(2, 5, 23, 57, seed=3)
    got = preprocess_tf(as_batch(clips))
    want = tf1_reference_input(clips)
    assert got.shape == (2, 3, 5, SIZE, SIZE) and got.dtype == torch.float32
    assert torch.allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parity
def test_cd_fvd_preprocessing_is_cd_fvds_preprocess_i3d():
    clips = moving_clips(2, 5, 31, 20, seed=4)
    got = preprocess_cd_fvd(as_batch(clips))
    want = preprocess_i3d(clips)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(got, want)


@pytest.mark.parametrize("variant", ["tf", "cd-fvd"])
def test_one_clip_is_prepared_as_in_a_batch(variant):
    clips = moving_clips(2, 4, 17, 25, seed=5)
    p = get_spec("i3d").variant(variant)
    assert torch.equal(p.prepare(clips[1]), p.prepare_many(as_batch(clips))[1])


def test_preprocessing_takes_uint8_clips_only():
    with pytest.raises(BadInputError, match="uint8 clips N x T x 3 x H x W"):
        preprocess_tf(torch.zeros(2, 4, 3, 8, 8))
    with pytest.raises(BadInputError, match="uint8 clips N x T x 3 x H x W"):
        preprocess_cd_fvd(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# -- FVD --------------------------------------------------------------------------------------------------

@pytest.mark.parity
def test_fvd_equals_cd_fvds_computation_and_the_closed_form(tf_features, cd_features):
    """FD of the 400-d I3D features as cd-fvd computes it: float64 moments, covariance divided by N
    (StyleGAN-V's FeatureStats), scipy sqrtm.  fidkit's Fréchet distance on the same moments agrees."""
    real = tf_features.ours.logits.numpy()
    fake = cd_features.ours.logits.numpy()
    stats = []
    for f in (real, fake):
        s = CdFvdStats(capture_mean_cov=True)
        s.append(f)
        stats.append(s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that the rank-deficient product may have no square root
        theirs = float(CdFvd.compute_fvd_from_stats(None, fake_stats=stats[1], real_stats=stats[0]))
    # fidkit's streamed statistics (unbiased covariance), rescaled to cd-fvd's divide-by-N convention
    fs = [FeatureStats.from_features(f) for f in (real, fake)]
    mine = frechet_distance_from_moments(fs[0].mean, fs[0].cov * (fs[0].n - 1) / fs[0].n,
                                         fs[1].mean, fs[1].cov * (fs[1].n - 1) / fs[1].n, n_a=fs[0].n, n_b=fs[1].n)
    # closed form: the non-zero eigenvalues of A B are the squared singular values of Xc Yc^T / sqrt(n m)
    x, y = real.astype(np.float64), fake.astype(np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m = len(x), len(y)
    trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt(n * m)
    closed = ((x.mean(0) - y.mean(0)) ** 2).sum() + (xc ** 2).sum() / n + (yc ** 2).sum() / m - 2 * trace_sqrt
    assert mine == pytest.approx(closed, rel=1e-6)
    assert mine == pytest.approx(theirs, rel=1e-6)


# -- weights ----------------------------------------------------------------------------------------------

def test_weights_load_through_fidkits_weight_path(ours, weights_path, monkeypatch):
    assert ours.weights_sha256 == fidkit.extractors.weights.sha256_of(weights_path)
    p = ours.provenance()
    assert (p.extractor, p.layer, p.mode) == ("i3d-kinetics400", "logits", "tf")
    monkeypatch.setenv("FIDKIT_I3D_WEIGHTS", weights_path)
    assert Extractor.get("i3d", device="cpu").weights_sha256 == ours.weights_sha256


def test_the_published_layout_without_step_counters_loads(weights_path, tmp_path):
    state = {k: v for k, v in torch.load(weights_path, weights_only=True).items()
             if not k.endswith("num_batches_tracked")}  # as TATS's conversion script saved it
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(state, path)
    net = InceptionI3D.from_state_dict(read_i3d_state_dict(path), str(path))
    assert isinstance(net, InceptionI3D)


def test_files_that_are_not_i3d_weights_are_refused(weights_path, tmp_path):
    state = torch.load(weights_path, weights_only=True)
    state.pop("Mixed_4b.b1b.conv3d.weight")
    path = tmp_path / "damaged.pt"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError, match="damaged.pt.*missing: Mixed_4b.b1b.conv3d.weight"):
        InceptionI3D.from_state_dict(read_i3d_state_dict(path), str(path))
    code = tmp_path / "code.pt"
    torch.save({"w": torch.zeros(1), "f": SimpleNamespace(a=1)}, code)  # needs Python pickle to load
    with pytest.raises(WeightsUnavailableError, match="code.pt"):
        read_i3d_state_dict(code)


@pytest.mark.parity
def test_declaration(reference):
    spec = get_spec("i3d")
    assert (spec.modality, spec.identity, spec.key) == ("video", "i3d-kinetics400", "i3d")
    head = reference.logits.conv3d
    assert spec.tap_for("embedding").name == "logits" and spec.tap("logits").dim == head.out_channels
    assert spec.tap("pool").dim == head.in_channels
    assert spec.tap("pool").role not in ("embedding", "logits", "spatial", "embedding_l2")
    assert spec.metric_names == {"fd": "fvd", "kd": "kvd"}
    assert spec.variant(None).name == "tf" and spec.variant("cd-fvd").size == SIZE
    w = spec.weights
    # the file cd-fvd downloads, under the name it saves it as
    assert w.url in inspect.getsource(load_i3d_model) and w.filename in inspect.getsource(load_i3d_model)
    assert w.env_var == "FIDKIT_I3D_WEIGHTS" and len(w.sha256) == 64 and int(w.sha256, 16) >= 0
