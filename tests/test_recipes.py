"""The recipes in examples/ (Slurm/shell array, Ray Data, Spark) give what one fidkit pass gives.

A small random network (fidkit.testing.tiny_extractor) stands in for Inception, registered in every worker
process by the recipes' ``setup`` hook; images go through it one at a time (batch size 1) so that each
image's features are bit-identical in the engine and in the one pass.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fidkit
from fidkit.testing import tiny_extractor

from helpers import smooth_images, write_folder

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SPACE = "tiny/embedding"
N = 24

pytestmark = pytest.mark.slow


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tiny_extractor()
    root = tmp_path_factory.mktemp("recipes")
    images = smooth_images(N, 16, seed=5)
    write_folder(root / "all", images)
    one = fidkit.compute_reference(str(root / "all"), features="tiny", keep_features=True, batch_size=1)
    return root, images, one


def _check(ref: fidkit.Reference, one: fidkit.Reference) -> None:
    s, t = ref.stats[SPACE], one.stats[SPACE]
    assert s.n == t.n == N
    assert np.abs(s.mean - t.mean).max() <= 1e-12 * np.abs(t.mean).max()
    assert np.abs(s.cov - t.cov).max() <= 1e-12 * np.abs(t.cov).max()
    assert np.array_equal(ref.features[SPACE], one.features[SPACE])


def _worker_env(monkeypatch) -> None:
    """Worker processes import fidkit and the recipes as the driver does."""
    paths = [str(ROOT / "src"), str(EXAMPLES), str(ROOT / "tests")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)   # Spark's workers: this interpreter, not 'python3'
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)


def test_slurm_script_by_a_loop_over_task_ids(data, tmp_path):
    root, images, one = data
    shards = []
    for i, (lo, hi) in enumerate([(0, 5), (5, 6), (6, 17), (17, N)]):
        d = tmp_path / f"shard-{i}"
        d.mkdir()
        for j in range(lo, hi):
            (d / f"{j:04d}.png").write_bytes((root / "all" / f"{j:04d}.png").read_bytes())
        shards.append(str(d))
    listing = tmp_path / "shards.txt"
    listing.write_text("\n".join(shards) + "\n")
    # 'fidkit' with the stand-in network registered: what FIDKIT points the script at
    wrapper = tmp_path / "fidkit_tiny.py"
    wrapper.write_text("import sys\nfrom fidkit.testing import tiny_extractor\ntiny_extractor()\n"
                       "from fidkit.cli import main\nsys.exit(main())\n")
    env = dict(os.environ, FIDKIT=f"{sys.executable} {wrapper}", PYTHONPATH=str(ROOT / "src"))
    script = str(EXAMPLES / "slurm_shards.sh")
    args = [str(listing), str(tmp_path / "parts"), "--features", "tiny", "--keep-features", "--batch-size", "1",
            "--quiet"]
    for task in (0, 1, 3):   # task 2 not run yet: the merge names its shard
        subprocess.run(["bash", script, *args], env=dict(env, SLURM_ARRAY_TASK_ID=str(task)), check=True)
    merged = subprocess.run(["bash", script, "--merge", str(listing), str(tmp_path / "parts"),
                             str(tmp_path / "ref.npz")], env=env, capture_output=True, text=True)
    assert merged.returncode == 2 and "shard-2" in merged.stderr
    for task in (2, 3):      # the rerun skips the task already done
        out = subprocess.run(["bash", script, *args[:-1]], env=dict(env, SLURM_ARRAY_TASK_ID=str(task)),
                             check=True, capture_output=True, text=True).stdout
        assert ("skipped" in out) == (task != 2)
    subprocess.run(["bash", script, "--merge", str(listing), str(tmp_path / "parts"), str(tmp_path / "ref.npz")],
                   env=env, check=True)
    _check(fidkit.Reference.load(tmp_path / "ref.npz"), one)


def test_ray_data_with_two_actors(data, monkeypatch):
    ray = pytest.importorskip("ray")
    _, images, one = data
    _worker_env(monkeypatch)
    recipe = _example("ray_shards")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"index": i, "image": images[i]} for i in range(N)], override_num_blocks=4)
        ref = recipe.ray_reference(ds, features="tiny", keep_features=True, concurrency=2, batch_size=1,
                                   setup=tiny_extractor)
    finally:
        ray.shutdown()
    _check(ref, one)


def test_spark_predict_batch_udf_local_mode(data, monkeypatch):
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession
    _, images, one = data
    _worker_env(monkeypatch)
    recipe = _example("spark_shards")
    spark = (SparkSession.builder.master("local[2]").appName("fidkit-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    try:
        rows = [(i, images[i].reshape(-1).astype(float).tolist()) for i in range(N)]
        df = spark.createDataFrame(rows, "index long, image array<double>").repartition(3)
        ref = recipe.spark_reference(df, size=(16, 16), features="tiny", keep_features=True, batch_size=1,
                                     setup=tiny_extractor)
    finally:
        spark.stop()
    _check(ref, one)
