"""An interrupted offline extraction continues from its checkpoint, with the result of an uninterrupted one."""

import numpy as np
import pytest

import fidkit
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.extractors.runtime import Extractor

from helpers import smooth_images, write_folder


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "imgs", smooth_images(14, 32, seed=7))


def _interrupt_after(monkeypatch, batches: int):
    calls = {"n": 0}
    original = Extractor.__call__

    def flaky(self, batch, taps=None):
        calls["n"] += 1
        if calls["n"] > batches:
            raise KeyboardInterrupt
        return original(self, batch, taps)
    monkeypatch.setattr(Extractor, "__call__", flaky)
    return calls


def _assert_same(a, b):
    assert set(a.stats) == set(b.stats) and set(a.features) == set(b.features)
    for space in a.stats:
        assert a.stats[space].n == b.stats[space].n
        np.testing.assert_array_equal(a.stats[space].mean, b.stats[space].mean)
        np.testing.assert_array_equal(a.stats[space].cov, b.stats[space].cov)
    for space in a.features:
        np.testing.assert_array_equal(np.asarray(a.features[space]), np.asarray(b.features[space]))


@pytest.mark.slow
def test_resumed_extraction_equals_an_uninterrupted_one(folder, weights, tmp_path, monkeypatch):
    kw = dict(features=True, weights=weights, device="cpu", batch_size=4)
    whole = fidkit.compute_reference(folder, **kw)
    ckpt = tmp_path / "ref.npz.partial"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        fidkit.compute_reference(folder, checkpoint=ckpt, checkpoint_every_s=0, **kw)
    assert ckpt.exists()
    monkeypatch.undo()
    calls = _interrupt_after(monkeypatch, 100)
    resumed = fidkit.compute_reference(folder, checkpoint=ckpt, **kw)
    assert calls["n"] == 2  # 14 images in batches of 4: 2 done before, 2 after
    _assert_same(resumed, whole)


@pytest.mark.slow
def test_a_checkpoint_of_another_source_or_setting_is_refused(folder, weights, tmp_path, monkeypatch):
    kw = dict(weights=weights, device="cpu", batch_size=4)
    ckpt = tmp_path / "ref.npz.partial"
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        fidkit.compute_reference(folder, checkpoint=ckpt, checkpoint_every_s=0, **kw)
    monkeypatch.undo()
    with pytest.raises(BadInputError, match="another computation.*batch_size"):
        fidkit.compute_reference(folder, checkpoint=ckpt, **dict(kw, batch_size=5))
    first = sorted(folder.glob("*.png"))[0]
    first.rename(folder / "0000-renamed.png")  # same count, another first image name
    with pytest.raises(BadInputError, match="changed since the checkpoint.*0000-renamed.png"):
        fidkit.compute_reference(folder, checkpoint=ckpt, **kw)


@pytest.mark.slow
def test_cli_stats_resumes_and_removes_its_checkpoint(folder, weights, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ref.npz"
    args = ["stats", str(folder), "-o", str(out), "--weights", weights, "--device", "cpu", "--batch-size", "4"]
    import fidkit.engine.progress as progress
    monkeypatch.setattr(progress.Checkpoint, "due", lambda self: True)
    _interrupt_after(monkeypatch, 2)
    assert main(args) == 130
    assert not out.exists() and (tmp_path / "ref.npz.partial").exists()
    monkeypatch.undo()
    assert main(args) == 0
    assert "resuming from" in capsys.readouterr().err
    assert out.exists() and not (tmp_path / "ref.npz.partial").exists()
    whole = fidkit.compute_reference(folder, weights=weights, device="cpu", batch_size=4)
    _assert_same(fidkit.Reference.load(out), whole)


@pytest.mark.slow
def test_an_interrupted_eval_continues_and_cleans_up(folder, weights, tmp_path, monkeypatch):
    fake = write_folder(tmp_path / "fake", smooth_images(10, 32, seed=8))
    kw = dict(metrics="fid,kid", weights=weights, device="cpu", batch_size=4, kid_subsets=3, kid_subset_size=5)
    whole = fidkit.evaluate(folder, fake, **kw)
    ckpts = tmp_path / "ckpt"
    import fidkit.engine.progress as progress
    monkeypatch.setattr(progress.Checkpoint, "due", lambda self: True)
    _interrupt_after(monkeypatch, 5)  # the reference side (4 batches) is done, the generated one has begun
    with pytest.raises(KeyboardInterrupt):
        fidkit.evaluate(folder, fake, checkpoint_dir=ckpts, **kw)
    assert len(list(ckpts.glob("*.partial"))) == 2
    monkeypatch.undo()
    calls = _interrupt_after(monkeypatch, 100)
    resumed = fidkit.evaluate(folder, fake, checkpoint_dir=ckpts, **kw)
    assert calls["n"] == 2  # only the generated side's last 2 batches ran again
    assert resumed.values == whole.values
    assert not list(ckpts.glob("*.partial"))  # removed once the result exists


@pytest.mark.slow
def test_an_eval_checkpoint_of_other_settings_is_replaced(folder, weights, tmp_path, monkeypatch):
    fake = write_folder(tmp_path / "fake", smooth_images(6, 32, seed=8))
    ckpts = tmp_path / "ckpt"
    import fidkit.engine.progress as progress
    monkeypatch.setattr(progress.Checkpoint, "due", lambda self: True)
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        fidkit.evaluate(folder, fake, metrics="fid", weights=weights, device="cpu", batch_size=4, checkpoint_dir=ckpts)
    monkeypatch.undo()
    r = fidkit.evaluate(folder, fake, metrics="fid", weights=weights, device="cpu", batch_size=5,  # other batches
                        checkpoint_dir=ckpts)
    whole = fidkit.evaluate(folder, fake, metrics="fid", weights=weights, device="cpu", batch_size=5)
    assert r["fid"] == whole["fid"] and not list(ckpts.glob("*.partial"))
