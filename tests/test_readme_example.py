"""The README's training-loop example runs as written (with smaller numbers), on whatever device is here."""

import re
from pathlib import Path

import numpy as np
import pytest

import fidkit

from helpers import smooth_images

README = Path(__file__).resolve().parents[1] / "README.md"




@pytest.mark.slow
def test_the_training_loop_example_runs(tmp_path, weights, monkeypatch):
    code = _block("<!-- training-loop-example")
    small = re.sub(r"STEPS, EVERY, N_EVAL, N_FINAL = .*", "STEPS, EVERY, N_EVAL, N_FINAL = 3, 2, 12, 16", code)
    assert small != code
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIDKIT_INCEPTION_WEIGHTS", weights)
    fidkit.compute_reference(smooth_images(16, 32, seed=4), features=True, device="cpu").save("cifar10.npz")
    namespace: dict = {}
    exec(compile(small, str(README), "exec"), namespace)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # steps 0 and 2
    final = namespace["final"]
    assert final.n_b == 16 and np.isfinite(final["fid"]) and {"kid", "precision", "coverage"} <= set(final.values)


def _block(marker: str) -> str:
    text = README.read_text()
    block = text[text.index(marker):]
    start = block.index("```python") + len("```python")
    return block[start: block.index("```", start)]


@pytest.mark.slow
def test_the_differentiable_fid_example_runs_and_lowers_the_batch_fid(tmp_path, weights, monkeypatch, capsys):
    code = _block("<!-- differentiable-fid-example")
    small = re.sub(r"STEPS, BATCH = .*", "STEPS, BATCH = 6, 8", code)
    assert small != code
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIDKIT_INCEPTION_WEIGHTS", weights)
    fidkit.compute_reference(smooth_images(16, 32, seed=4), spatial=False, device="cpu").save("cifar10.npz")
    namespace: dict = {}
    exec(compile(small, str(README), "exec"), namespace)
    history = namespace["history"]
    assert len(history) == 6 and np.all(np.isfinite(history))
    assert history[-1] < history[0]
    assert "batch FID:" in capsys.readouterr().out
