"""CLIP feature spaces end to end: CLIP-FID as clean-fid computes it, CMMD as google-research defines it,
under random weights written in OpenAI's published (TorchScript) format."""

import numpy as np
import pytest
import torch
from PIL import Image

import fidkit
from fidkit.metrics.frechet import frechet_distance_from_moments

pytestmark = [pytest.mark.parity,  # clean-fid and OpenAI clip
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")]


@pytest.fixture(scope="module")
def clip_b32(random_weights):
    return random_weights("clip-vitb32")  # OpenAI's TorchScript archive, shared with tests/extractors/test_clip.py


@pytest.fixture(scope="module")
def clip_l14_336(random_weights):
    return random_weights("clip-vitl14-336")  # 930 MB, written once per session


def _pngs(folder, k=None):
    paths = sorted(folder.glob("*.png"))[:k]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def test_clip_fid_features_and_value_equal_clean_fid(folders, clip_b32, openai_clip, monkeypatch):
    cfid = pytest.importorskip("cleanfid.fid")
    from cleanfid import clip_features
    original = openai_clip.load
    monkeypatch.setattr(clip_features.clip, "load",
                        lambda name, device="cpu", **k: original(clip_b32, device="cpu", jit=False))
    fx = clip_features.CLIP_fx("ViT-B/32", device="cpu")
    a, b = folders
    theirs = [cfid.get_folder_features(str(f), model=fx, num_workers=0, batch_size=8, device=torch.device("cpu"),
                                       mode="clean", custom_fn_resize=clip_features.img_preprocess_clip,
                                       verbose=False).astype(np.float64) for f in (a, b)]
    ref = fidkit.compute_reference(a, features=True, extractors="clip", weights={"clip": clip_b32}, device="cpu")
    gen = fidkit.compute_reference(b, features=True, extractors="clip", weights={"clip": clip_b32}, device="cpu")
    for ours, their in zip((ref, gen), theirs):
        feats = ours.features["clip-vitb32/embedding"]
        assert feats.shape == their.shape == (len(their), 512)
        assert np.abs(feats - their).max() < 1e-4
        assert np.abs(their - their.mean(0)).max() > 0.1  # the images give different features
    r = fidkit.evaluate(a, b, metrics="fd", features="clip", weights={"clip": clip_b32}, device="cpu")
    expected = frechet_distance_from_moments(theirs[0].mean(0), np.cov(theirs[0], rowvar=False),
                                             theirs[1].mean(0), np.cov(theirs[1], rowvar=False))
    assert r["fd_clip"] == pytest.approx(expected, rel=1e-6)
    assert r.spaces["clip-vitb32/embedding"].mode == "clean-fid"


def _mmd_definition(x: np.ndarray, y: np.ndarray, sigma: float = 10.0, scale: float = 1000.0) -> float:
    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma ** 2))
    return scale * float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_cmmd_equals_its_definition_on_openai_clip_embeddings(folders, clip_l14_336, openai_clip):
    a, b = folders
    model, _ = openai_clip.load(clip_l14_336, device="cpu", jit=False)
    from fidkit.extractors.clip import prepare_cmmd

    def embeddings(folder):
        x = torch.stack([prepare_cmmd(img) for img in _pngs(folder, 3)])
        with torch.inference_mode():
            e = model.encode_image(x).double().numpy()
        return e / np.linalg.norm(e, axis=1, keepdims=True)
    expected = _mmd_definition(embeddings(a), embeddings(b))
    r = fidkit.evaluate(a, b, metrics="cmmd", weights={"clip-vitl14-336": clip_l14_336}, device="cpu", limit=3)
    assert set(r.values) == {"cmmd"}
    assert r["cmmd"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert r.spaces["clip-vitl14-336/embedding_l2"].mode == "cmmd"
