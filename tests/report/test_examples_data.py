"""keep_examples: the views chosen from per-sample features, with thumbnails of exactly the samples chosen, in
bounded memory; near copies flagged for an exact duplicate of a reference image and not otherwise."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit.data.sources import open_source
from fidkit.engine.plan import make_plan
from fidkit.engine.state import Side
from fidkit.metrics import examples as views
from fidkit.report.examples import ExamplesRequest, ThumbnailPool, thumbnail

from helpers import smooth_images

SPACE = "inception/pool3"


def _features(images: np.ndarray) -> np.ndarray:
    """A stand-in embedding: 8 x 8 block means of each image (equal images, equal features)."""
    n, h, w, _ = images.shape
    return images.astype(np.float64).reshape(n, 8, h // 8, 8, w // 8, 3).mean(axis=(2, 4)).reshape(n, -1)


def _pixels(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def _build(real_images, fake_images, fake_spec, k=4):
    plan = make_plan("fid", "inception")
    real_src, fake_src = open_source(real_images), open_source(fake_spec)
    req = ExamplesRequest(k, plan, real_src, fake_src)
    assert SPACE in plan.fake.spaces("keep") and SPACE in plan.real.spaces("keep")
    wrapped = req.fake_source(fake_src)
    for _ in wrapped.batches():                      # the pass reads the generated side once
        pass
    real = Side("real", {}, {SPACE: _features(real_images)})
    fake = Side("fake", {}, {SPACE: _features(fake_images)})
    return req.build(real, fake, pr_k=3, seed=0)


@pytest.fixture(scope="module")
def images():
    return smooth_images(40, 32, seed=11), smooth_images(30, 32, seed=12)


def test_an_exact_copy_of_a_reference_image_is_flagged_and_nothing_else(images):
    real, fake = images
    fake = fake.copy()
    fake[6] = real[17]
    ex = _build(real, fake, fake)
    flagged = [e for e in ex["nearest"] if e["near_copy"]]
    assert ex["near_copies"] == 1 and [e["index"] for e in flagged] == [6]
    assert flagged[0]["neighbours"][0]["ref_index"] == 17 and flagged[0]["neighbours"][0]["distance"] == 0.0
    # the thumbnails shown are those of the images named
    np.testing.assert_array_equal(_pixels(flagged[0]["thumb"]), real[17])
    np.testing.assert_array_equal(_pixels(flagged[0]["neighbours"][0]["thumb"]), real[17])
    clean = _build(real, images[1], images[1])
    assert clean["near_copies"] == 0 and not any(e["near_copy"] for e in clean["nearest"])


def test_views_name_the_samples_their_definitions_choose(images):
    real, fake = images
    ex = _build(real, fake, fake, k=3)
    fr, ff = _features(real), _features(fake)
    scores = views.realism_scores(fr, ff, k=3)
    assert [e["index"] for e in ex["realism"]["most_realistic"]] == list(np.argsort(-scores, kind="stable")[:3])
    assert [e["index"] for e in ex["realism"]["least_realistic"]] == list(np.argsort(scores, kind="stable")[:3])
    for e in ex["realism"]["most_realistic"]:
        assert e["score"] == pytest.approx(scores[e["index"]])
        np.testing.assert_array_equal(_pixels(e["thumb"]), fake[e["index"]])
    for i, uri in enumerate(ex["grid"]):
        np.testing.assert_array_equal(_pixels(uri), fake[i])
    d = views.covariance_directions(np.cov(ff, rowvar=False), np.cov(fr, rowvar=False), n=4)[0]
    proj = (ff - ff.mean(0)) @ d.vector
    assert ex["directions"][0]["eigenvalue"] == pytest.approx(d.eigenvalue)
    assert ex["directions"][0]["high_index"][0] == int(np.argmax(proj))
    assert ex["directions"][0]["low_index"][0] == int(np.argmin(proj))
    json.dumps(ex)                                   # a plain JSON value


def test_a_stream_read_once_shows_only_its_first_samples(images):
    real, fake = images
    ex = _build(real, fake, (fake[i:i + 5] for i in range(0, 30, 5)))
    assert "first 30" in ex["candidates"] and all(e["thumb"] is not None for e in ex["realism"]["most_realistic"])


def test_the_thumbnail_pool_is_bounded_on_a_long_stream():
    pool = ThumbnailPool(16)
    batch = smooth_images(8, 16, seed=1)
    source = pool.wrap(open_source(batch for _ in range(200)))    # 1600 images, read once
    seen = sum(u8.shape[0] for u8, _, _ in source.batches())
    assert seen == 1600 and sorted(pool.thumbs) == list(range(16))
    np.testing.assert_array_equal(_pixels(pool.thumbs[9]), batch[1])


def test_thumbnails_are_small():
    img = smooth_images(1, 300, seed=2)[0]
    assert max(_pixels(thumbnail(img)).shape[:2]) == 64


@pytest.mark.slow
def test_evaluate_keeps_examples_and_the_terms_in_its_result(tmp_path, weights):
    real = smooth_images(20, 32, seed=21)
    fake = smooth_images(12, 32, seed=22)
    fake[3] = real[5]
    r = fidkit.evaluate(real, fake, metrics="fid", weights=weights, device="cpu", keep_examples=2)
    v = r.values
    assert abs(v["fid_mean_term"] + v["fid_cov_term"] - v["fid"]) <= 1e-10
    d = r.to_dict()
    assert d["examples"]["space"] == SPACE and len(d["examples"]["grid"]) == 2
    assert d["examples"]["near_copies"] >= 1 and d["examples"]["nearest"][0]["index"] == 3
    assert d["examples"]["nearest"][0]["near_copy"] and d["examples"]["nearest"][0]["neighbours"][0]["ref_index"] == 5
    json.dumps(d)


@pytest.mark.slow
def test_the_evaluator_keeps_examples_of_the_images_fed_to_it(weights):
    real = smooth_images(16, 32, seed=31)
    fake = smooth_images(10, 32, seed=32)
    fake[7] = real[2]
    ev = fidkit.Evaluator("fid", real, weights=weights, device="cpu", keep_examples=2)
    for lo in range(0, 10, 4):
        ev.update(fake[lo:lo + 4])
    ex = ev.compute().examples
    assert "first 10" in ex["candidates"] and ex["nearest"][0]["index"] == 7 and ex["nearest"][0]["near_copy"]
    np.testing.assert_array_equal(_pixels(ex["nearest"][0]["thumb"]), real[2])
    np.testing.assert_array_equal(_pixels(ex["nearest"][0]["neighbours"][0]["thumb"]), real[2])
    np.testing.assert_array_equal(_pixels(ex["grid"][1]), fake[1])
