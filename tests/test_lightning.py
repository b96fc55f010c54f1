"""FidkitCallback and FidkitMetric in Lightning's own Trainer on CPU: the logged values equal fidkit's own
evaluation of the same generator on the same samples, on one process and on two (DDP, gloo)."""

import csv
import json

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")  # CI installs it (tests/test_reference_packages.py)

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

import fidkit  # noqa: E402
from fidkit.errors import BadInputError  # noqa: E402
from fidkit.lightning import FidkitCallback  # noqa: E402
from fidkit.torchmetric import FidkitMetric  # noqa: E402

from helpers import smooth_images  # noqa: E402
import tiny_net  # noqa: E402  (registers the network, also in spawned processes)

K = tiny_net.KEY
EV = dict(features=tiny_net.NAME, value_range=(-1, 1), kid_subsets=3, kid_subset_size=6)


class TinyGAN(pl.LightningModule):
    """A generator (8-d noise -> 3 x 16 x 16 in [-1, 1]) trained on a stand-in loss; ``fid`` (optional) is a
    FidkitMetric fed real images in validation, as a user would."""

    def __init__(self, fid: FidkitMetric | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.g = torch.nn.Sequential(torch.nn.Linear(8, 3 * 16 * 16), torch.nn.Tanh())
        self.fid = fid

    def sample(self, seeds):
        return self.g(fidkit.seeded_randn(seeds, 8, device=self.device)).view(-1, 3, 16, 16)

    def training_step(self, batch, batch_idx):
        return (self.g(batch) - 0.5).square().mean()

    def validation_step(self, batch, batch_idx):
        images, seeds = batch
        self.fid.update(images, real=True)
        self.fid.update(self.sample(seeds))

    def on_validation_epoch_end(self):
        if self.fid.value is not None:
            self.log(f"val/{self.fid.value}", self.fid)   # Lightning calls compute() and reset()
        else:
            self.log_dict(self.fid.compute())              # every value: compute() is collective, then reset
            self.fid.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _noise_loader():
    return torch.utils.data.DataLoader(torch.randn(16, 8), batch_size=4)


def _sample(module, seeds):
    return module.sample(seeds)


def _reference(tmp_path):
    ref = tmp_path / "ref.npz"
    real = torch.from_numpy(smooth_images(24, 16, seed=7)).permute(0, 3, 1, 2)
    fidkit.compute_reference(real, features=tiny_net.NAME, keep_features=True, device="cpu").save(ref)
    return str(ref)


def _trainer(tmp_path, callbacks, **kw):
    kw = {"max_steps": 4, "enable_checkpointing": False, **kw}
    return pl.Trainer(accelerator="cpu", callbacks=callbacks, logger=CSVLogger(tmp_path / "logs"),
                      enable_progress_bar=False, enable_model_summary=False, **kw)


def test_callback_logs_what_fidkit_computes_for_the_trained_generator(tmp_path):
    ref = _reference(tmp_path)
    cb = FidkitCallback(_sample, reference=ref, metrics="fd,kd", n_samples=20, every_n_steps=2, batch_size=7,
                        network_batch_size=1,
                        seed=3, jsonl=tmp_path / "fid.jsonl", device="cpu", **EV)
    model = TinyGAN()
    trainer = _trainer(tmp_path, [cb], devices=1)
    trainer.fit(model, _noise_loader())
    # after step 4 the generator is final: fidkit's own evaluation of it, at another batch size
    want = fidkit.evaluate_generator(model.sample, n=20, batch_size=5, seed=3, reference=ref, metrics="fd,kd",
                                     device="cpu", **EV)   # network batch 64: features equal to float32 rounding
    np.testing.assert_allclose(cb.result[f"fd_{K}"], want[f"fd_{K}"], rtol=1e-6)
    np.testing.assert_allclose(cb.result[f"kd_{K}"], want[f"kd_{K}"], rtol=1e-6)
    lines = [json.loads(line) for line in (tmp_path / "fid.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4] and lines[1][f"fd_{K}"] == cb.result[f"fd_{K}"]
    assert lines[0][f"fd_{K}"] != lines[1][f"fd_{K}"]      # the generator trained in between
    (metrics_csv,) = (tmp_path / "logs").rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get(f"fidkit/fd_{K}")]
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert float(rows[1][f"fidkit/fd_{K}"]) == pytest.approx(want[f"fd_{K}"], rel=1e-6)
    assert float(rows[1]["fidkit/n_b"]) == 20
    assert float(trainer.callback_metrics[f"fidkit/fd_{K}"]) == pytest.approx(want[f"fd_{K}"], rel=1e-6)
    assert model.training     # the callback put the module back in training mode


def test_callback_by_epoch_and_at_the_end_feeds_model_checkpoint(tmp_path):
    ref = _reference(tmp_path)
    cb = FidkitCallback(_sample, reference=ref, metrics="fd", n_samples=12, every_n_epochs=1, on_train_end=True,
                        network_batch_size=1, jsonl=tmp_path / "fid.jsonl", device="cpu", **EV)
    best = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor=f"fidkit/fd_{K}", mode="min")
    trainer = _trainer(tmp_path, [cb, best], devices=1, max_steps=-1, max_epochs=3,
                       enable_checkpointing=True)
    trainer.fit(TinyGAN(), _noise_loader())
    lines = [json.loads(line) for line in (tmp_path / "fid.jsonl").read_text().splitlines()]
    # 4 steps per epoch; the end of training is the last epoch's step: evaluated once, not twice
    assert [(line["step"], line["epoch"]) for line in lines] == [(4, 0), (8, 1), (12, 2)]
    # Lightning keeps logged values as float32
    assert float(best.best_model_score) == pytest.approx(min(line[f"fd_{K}"] for line in lines), rel=1e-6)


def test_missing_package_names_the_extra():
    import importlib
    import sys
    for package, module in (("lightning", "fidkit.lightning"), ("torchmetrics", "fidkit.torchmetric")):
        with pytest.MonkeyPatch.context() as mp:   # its own: undoing it leaves the test's fixtures alone
            mp.setitem(sys.modules, package, None)   # import now fails as if it were not installed
            mp.delitem(sys.modules, module)
            with pytest.raises(ImportError, match=rf"pip install 'fidkit\[{package}\]'"):
                importlib.import_module(module)
        assert sys.modules[module].__name__ == module   # the real modules are back


def test_callback_needs_a_schedule():
    with pytest.raises(BadInputError, match="every_n_steps"):
        FidkitCallback(_sample, reference="ref.npz")
    with pytest.raises(BadInputError, match="n_samples"):
        FidkitCallback(_sample, reference="ref.npz", every_n_steps=10, n_samples=0)


def _val_loader():
    real = torch.from_numpy(smooth_images(18, 16, seed=9)).permute(0, 3, 1, 2)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(real, torch.arange(18)), batch_size=5)


def test_metric_logged_by_self_log_equals_the_evaluator(tmp_path):
    """``self.log(name, metric)``: Lightning calls compute() at epoch end and logs the tensor."""
    model = TinyGAN(FidkitMetric("fd", value=f"fd_{K}", device="cpu", batch_size=1, **EV))
    trainer = _trainer(tmp_path, [], devices=1, limit_train_batches=0)
    trainer.validate(model, _val_loader())
    logged = float(trainer.callback_metrics[f"val/fd_{K}"])
    ev = fidkit.Evaluator("fd", device="cpu", batch_size=1, **EV)
    for images, seeds in _val_loader():
        ev.update(images, real=True)
        ev.update(model.sample(seeds))
    np.testing.assert_allclose(logged, ev.compute()[f"fd_{K}"], rtol=1e-6)   # Lightning logs float32


# -- two processes: Lightning's DDP on CPU with gloo -----------------------------------------------------------------

def _ddp(tmp_path, callbacks, **kw):
    from lightning.pytorch.strategies import DDPStrategy
    # start_method="spawn": pytest's command line is not re-run in the workers (Lightning's default launcher would)
    return _trainer(tmp_path, callbacks, devices=2,
                    strategy=DDPStrategy(process_group_backend="gloo", start_method="spawn"), **kw)


@pytest.mark.slow
def test_callback_under_ddp_equals_one_process_on_all_samples(tmp_path):
    ref = _reference(tmp_path)
    cb = FidkitCallback(_sample, reference=ref, metrics="fd,kd", n_samples=21, every_n_steps=2, batch_size=4,
                        network_batch_size=1, seed=3, jsonl=tmp_path / "fid.jsonl", device="cpu", **EV)
    model = TinyGAN()
    trainer = _ddp(tmp_path, [cb])
    trainer.fit(model, _noise_loader())   # Lightning loads rank 0's final weights back into `model`
    lines = [json.loads(line) for line in (tmp_path / "fid.jsonl").read_text().splitlines()]
    assert [(line["step"], line["n_b"]) for line in lines] == [(2, 21), (4, 21)]   # rank 0 wrote, for all samples
    # the trained generator, evaluated by one process: each DDP process drew only its share of the 21 samples
    want = fidkit.evaluate_generator(model.sample, n=21, batch_size=5, seed=3, reference=ref, metrics="fd,kd",
                                     device="cpu", **EV)
    for key in (f"fd_{K}", f"kd_{K}"):
        np.testing.assert_allclose(lines[1][key], want[key], rtol=1e-6, err_msg=key)
    assert float(trainer.callback_metrics[f"fidkit/fd_{K}"]) == pytest.approx(want[f"fd_{K}"], rel=1e-6)


@pytest.mark.slow
def test_metric_under_ddp_equals_the_evaluator_on_all_samples(tmp_path):
    """Each process validates half the images; torchmetrics' sync (sum of moments, cat of rows) combines them."""
    model = TinyGAN(FidkitMetric("fd,prdc", device="cpu", batch_size=1, pr_k=3, dc_k=3, **EV))
    trainer = _ddp(tmp_path, [], limit_train_batches=0)
    trainer.validate(model, _val_loader())
    ev = fidkit.Evaluator("fd,prdc", device="cpu", batch_size=1, pr_k=3, dc_k=3, **EV)
    for images, seeds in _val_loader():     # one process, every image; these metrics do not depend on order
        ev.update(images, real=True)
        ev.update(model.sample(seeds))
    want = ev.compute().flat()
    for key in (f"fd_{K}", f"precision_{K}", f"recall_{K}", f"density_{K}", f"coverage_{K}", "n_a", "n_b"):
        np.testing.assert_allclose(float(trainer.callback_metrics[key]), want[key], rtol=1e-6, err_msg=key)
    assert want["n_b"] == 18
