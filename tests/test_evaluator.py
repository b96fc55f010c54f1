"""The online evaluator on one process: equal to the offline API, resets, checkpoints, evaluate_generator."""

import io

import numpy as np
import pytest
import torch

import fidkit
from fidkit import BadInputError, Evaluator, evaluate_generator, sample_seeds, seeded_randn
from fidkit.extractors.inception import MODES
from fidkit.data.sources import to_uint8_nchw

from helpers import smooth_images

OPTS = dict(kid_subsets=5, kid_subset_size=8, is_splits=2)
METRICS = ("fid", "kid", "is", "sfid", "prdc")


@pytest.fixture(scope="module")
def images():
    return smooth_images(14, 40, seed=11), smooth_images(17, (36, 44), seed=12)


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _feed(ev, arr, sizes, real=False):
    lo = 0
    for s in sizes:
        ev.update(_nchw(arr[lo:lo + s]), real=real)
        lo += s
    assert lo == len(arr)


def _close(a: dict, b: dict, rtol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-7, err_msg=k)  # float32 features: ulp-level noise


@pytest.mark.slow
def test_online_equals_offline(images, weights):
    real, fake = images
    offline = fidkit.evaluate(real, fake, metrics=METRICS, weights=weights, device="cpu", **OPTS)
    ev = Evaluator(METRICS, weights=weights, device="cpu", batch_size=6, **OPTS)
    _feed(ev, real, [5, 9], real=True)
    _feed(ev, fake, [1, 10, 6])
    online = ev.compute()
    assert (online.n_a, online.n_b) == (14, 17)
    # Network batches differ (6 vs 32), so values agree to rounding, not bit for bit.
    _close(online.values, offline.values)
    assert not online.provenance.differences(offline.provenance) and online.mode == "tf"


def test_batched_preparation_equals_per_image(images):
    real, _ = images
    for mode in MODES.values():
        batch = mode.prepare_many(_nchw(real[:3]))
        for i in range(3):
            torch.testing.assert_close(batch[i], mode.prepare(real[i]), rtol=0, atol=0)


@pytest.mark.slow
def test_float_input_is_rounded_like_uint8(images, weights):
    real, fake = images
    results = []
    for to_input, value_range in ((lambda x: x, None), (lambda x: x.float() / 255, (0, 1)),
                                  (lambda x: x.double() / 127.5 - 1, (-1, 1))):
        ev = Evaluator(("fid",), weights=weights, device="cpu", value_range=value_range)
        ev.update(to_input(_nchw(real)), real=True)
        ev.update(to_input(_nchw(fake)))
        results.append(ev.compute()["fid"])
    assert results[0] == results[1] == results[2]


@pytest.mark.slow
def test_input_guards(weights):
    ev = Evaluator(("fid",), weights=weights, device="cpu")
    with pytest.raises(BadInputError, match="declared value range"):
        ev.update(torch.rand(2, 3, 16, 16))
    with pytest.raises(BadInputError, match="channels-last"):
        ev.update(torch.zeros(2, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(BadInputError, match="no generated images"):
        ev.compute()
    with pytest.raises(BadInputError, match="value_range"):
        Evaluator(("fid",), weights=weights, device="cpu", value_range=(0, 2))
    ev01 = Evaluator(("fid",), weights=weights, device="cpu", value_range=(0, 1))
    ev01.update(torch.full((2, 3, 16, 16), 255, dtype=torch.uint8), real=True)  # uint8 stays [0, 255]
    ev01.update(torch.ones(2, 3, 16, 16))  # same pixels as float in [0, 1]
    ev01.update(torch.ones(2, 3, 16, 16, dtype=torch.uint8))  # [0, 1] floats cast with .byte(): warned
    with pytest.warns(fidkit.FidkitWarning, match="cast to uint8 without scaling"):
        ev01.compute()


@pytest.mark.slow
def test_no_autograd_graph_is_built(images, weights):
    _, fake = images
    x = (_nchw(fake).float() / 255).requires_grad_()
    ev = Evaluator(("fid", "kid"), weights=weights, device="cpu", value_range=(0, 1))
    ev.update(x)
    state = ev.state_dict()["fake"]
    assert not state["features"]["inception/pool3"].requires_grad
    assert x.grad is None and x.grad_fn is None


@pytest.mark.slow
def test_reference_file_and_reset_semantics(images, weights, tmp_path):
    real, fake = images
    path = fidkit.compute_reference(real, features=True, weights=weights, device="cpu").save(tmp_path / "ref.npz")
    ev = Evaluator(METRICS, reference=path, weights=weights, device="cpu", **OPTS)
    with pytest.raises(BadInputError, match="fixed reference"):
        ev.update(_nchw(real), real=True)
    ev.update(_nchw(smooth_images(9, 40, seed=99)))
    ev.reset()
    assert ev.n == 0
    with pytest.raises(BadInputError, match="no generated images"):
        ev.compute()
    _feed(ev, fake, [8, 9])
    got = ev.compute()
    offline = fidkit.evaluate(path, fake, metrics=METRICS, weights=weights, device="cpu", **OPTS)
    _close(got.values, offline.values)
    assert got.n_a == 14 and got.n_b == 17

    own = Evaluator(("fid",), weights=weights, device="cpu")
    own.update(_nchw(real), real=True)
    own.update(_nchw(fake))
    first = own.compute()["fid"]
    own.reset()  # keeps the real side
    own.update(_nchw(fake))
    assert own.compute()["fid"] == first
    own.reset(real=True)
    own.update(_nchw(fake))
    with pytest.raises(BadInputError, match="no real images"):
        own.compute()


@pytest.mark.slow
def test_state_dict_round_trip_mid_evaluation(images, weights):
    real, fake = images
    whole = Evaluator(METRICS, weights=weights, device="cpu", **OPTS)
    part = Evaluator(METRICS, weights=weights, device="cpu", **OPTS)
    for ev in (whole, part):
        _feed(ev, real, [14], real=True)
        ev.update(_nchw(fake[:9]))
    buf = io.BytesIO()
    torch.save(part.state_dict(), buf)
    del part
    buf.seek(0)
    resumed = Evaluator(METRICS, weights=weights, device="cpu", **OPTS)
    resumed.load_state_dict(torch.load(buf, weights_only=True))  # plain tensors and values: no pickle needed
    for ev in (whole, resumed):
        ev.update(_nchw(fake[9:]))
    assert resumed.compute().values == whole.compute().values  # same features, same arithmetic

    with pytest.raises(BadInputError, match="metrics"):
        Evaluator(("fid",), weights=weights, device="cpu").load_state_dict(whole.state_dict())
    with pytest.raises(BadInputError, match="options"):
        Evaluator(METRICS, weights=weights, device="cpu", **dict(OPTS, kid_subsets=7)).load_state_dict(
            whole.state_dict())
    with pytest.raises(BadInputError, match="mode"):
        Evaluator(METRICS, weights=weights, device="cpu", mode="clean", **OPTS).load_state_dict(whole.state_dict())


@pytest.mark.slow
def test_conversion_warnings_reach_the_result(weights):
    gray = torch.from_numpy(smooth_images(6, 32, seed=3)[..., :1]).permute(0, 3, 1, 2)
    ev = Evaluator(("fid",), weights=weights, device="cpu")
    ev.update(gray, real=True)
    ev.update(_nchw(smooth_images(6, 32, seed=4)))
    with pytest.warns(fidkit.FidkitWarning):
        result = ev.compute()
    assert any(w.startswith("6 of 6 images in the real images were grayscale") for w in result.warnings)
    assert not any("in the generated images" in w for w in result.warnings)


# -- evaluate_generator -------------------------------------------------------------------

def toy_generator(seeds: torch.Tensor) -> torch.Tensor:
    """A deterministic 'generator': coarse per-sample noise upsampled to 32 px."""
    z = seeded_randn(seeds, 3, 4, 4)
    img = torch.nn.functional.interpolate(z, size=32, mode="bilinear", align_corners=False)
    return (img.tanh() * 0.5 + 0.5).clamp(0, 1)


def test_sample_seeds_depend_on_index_only():
    a = sample_seeds(7, np.arange(10))
    b = torch.cat([sample_seeds(7, np.arange(0, 3)), sample_seeds(7, np.arange(3, 10))])
    assert torch.equal(a, b) and len(set(a.tolist())) == 10 and (a >= 0).all()
    assert not torch.equal(sample_seeds(8, np.arange(10)), a)
    assert sample_seeds(0, [1])[0] != sample_seeds(1, [0])[0]  # (seed, index) pairs do not alias
    z = seeded_randn(a[:4], 5)
    assert torch.equal(z[2], seeded_randn(a[2:3], 5)[0])


@pytest.mark.slow
def test_evaluate_generator_is_independent_of_batch_size(images, weights, tmp_path):
    real, _ = images
    ref = fidkit.compute_reference(real, features=True, weights=weights, device="cpu").save(tmp_path / "r.npz")
    seen = {}

    def recording(bs):
        def fn(seeds):
            seen.setdefault(bs, []).extend(seeds.tolist())
            return toy_generator(seeds)
        return fn

    kw = dict(reference=ref, seed=3, weights=weights, device="cpu", value_range=(0, 1),
              metrics=("fid", "kid"), kid_subsets=4, kid_subset_size=6)
    r5 = evaluate_generator(recording(5), n=13, batch_size=5, **kw)
    r13 = evaluate_generator(recording(13), n=13, batch_size=13, **kw)
    assert seen[5] == seen[13] and len(set(seen[5])) == 13
    assert r5.n_b == r13.n_b == 13
    _close(r5.values, r13.values)

    ev = Evaluator(("fid",), reference=ref, weights=weights, device="cpu", value_range=(0, 1))
    ev.update(torch.zeros(3, 3, 32, 32))  # reset by evaluate_generator
    again = evaluate_generator(toy_generator, n=13, batch_size=4, seed=3, evaluator=ev)
    np.testing.assert_allclose(again["fid"], r5["fid"], rtol=1e-6)
    with pytest.raises(BadInputError, match="returned 2 images for 4 seeds"):
        evaluate_generator(lambda s: toy_generator(s)[:2], n=8, batch_size=4, evaluator=ev)
    with pytest.raises(BadInputError, match="reference"):
        evaluate_generator(toy_generator, n=4)


def test_to_uint8_nchw_keeps_device_and_tags():
    x, tags = to_uint8_nchw(torch.rand(2, 4, 8, 8), "x", (0, 1))
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 8, 8) and tags == {"alpha"}
