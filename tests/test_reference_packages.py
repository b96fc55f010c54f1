"""In CI every reference implementation must be importable: parity tests skip without them, and a silent skip
would hide a lost check."""

import importlib
import os

import pytest


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every reference package")
@pytest.mark.parametrize("module", ["torch_fidelity", "pytorch_fid", "cleanfid", "torchvision",
                                    "dinov2.models.vision_transformer", "cdfvd.third_party.i3d.pytorch_i3d", "av",
                                    # the shard tests (tests/data/test_sources_object_storage.py) skip without them
                                    "fsspec", "s3fs", "pyarrow.parquet", "moto.server",
                                    "plotly", "matplotlib", "selenium",
                                    "ray.data", "pyspark.ml.functions", "pandas",
                                    # the logging and training-framework bridges' tests (fidkit.loggers,
                                    # fidkit.torchmetric, fidkit.lightning) skip without these
                                    "tensorboard", "wandb", "torchmetrics", "lightning.pytorch"])
def test_reference_package_is_installed(module):
    importlib.import_module(module)


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every reference package")
def test_openai_clip_is_installed():
    from fidkit.testing import import_openai_clip
    assert import_openai_clip().load


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every reference package")
@pytest.mark.parametrize("program", ["chromium", "chromedriver"])
def test_browser_for_the_report_tests_is_installed(program):
    # .ci/run installs Debian's chromium and chromium-driver; the report's browser tests skip without them
    import shutil
    assert shutil.which(program), f"{program} is missing: .ci/run must install chromium chromium-driver"
