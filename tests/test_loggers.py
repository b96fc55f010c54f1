"""fidkit.loggers: the result read back by TensorBoard's own event reader and from W&B's offline run file."""

import json
import struct
import sys

import pytest

from fidkit.errors import BadInputError
from fidkit.loggers import log_tensorboard, log_wandb
from fidkit.report.result import EvalResult
from fidkit.stats.provenance import Provenance

pytest.importorskip("tensorboard")  # CI installs it (tests/test_reference_packages.py)


def _result(fid: float) -> EvalResult:
    return EvalResult(values={"fid": fid, "fid_ci": [fid - 1, fid + 2], "kid": 0.25, "fid_inf_sizes": [5, 10]},
                      n_a=64, n_b=32, a="ref.npz", b="fake/", mode="tf", provenance=Provenance())


def _tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_log_directory_gets_every_scalar_at_each_step(tmp_path):
    assert log_tensorboard(_result(10.0), tmp_path, step=100) == _result(10.0).flat(prefix="fidkit/")
    log_tensorboard(_result(7.5), tmp_path, step=200)   # a second writer in the same directory: a second point
    scalars = _tensorboard_scalars(tmp_path)
    assert set(scalars) == {"fidkit/fid", "fidkit/fid_lo", "fidkit/fid_hi", "fidkit/kid", "fidkit/n_a",
                            "fidkit/n_b"}
    assert sorted(scalars["fidkit/fid"]) == [(100, 10.0), (200, 7.5)]
    assert sorted(scalars["fidkit/fid_hi"]) == [(100, 12.0), (200, 9.5)]
    assert scalars["fidkit/n_b"] == [(100, 32.0), (200, 32.0)]


def test_tensorboard_writer_is_used_and_left_open(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        log_tensorboard(_result(3.0), writer, step=5, prefix="eval/")
        writer.add_scalar("loss", 1.0, 5)   # still open: the caller owns it
    scalars = _tensorboard_scalars(tmp_path)
    assert scalars["eval/fid"] == [(5, 3.0)] and scalars["loss"] == [(5, 1.0)]


def test_tensorboard_refuses_what_is_not_a_writer(tmp_path):
    with pytest.raises(BadInputError, match="SummaryWriter or a log directory"):
        log_tensorboard(_result(1.0), 42, step=0)
    with pytest.raises(BadInputError, match="EvalResult"):
        log_tensorboard({"fid": 1.0}, tmp_path, step=0)


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)   # import tensorboard now fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'fidkit\[tensorboard\]'"):
        log_tensorboard(_result(1.0), tmp_path, step=0)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"pip install 'fidkit\[wandb\]'"):
        log_wandb(_result(1.0))


# -- Weights & Biases, offline --------------------------------------------------------------------------------------

def _wandb_records(path):
    """The protobuf records of a ``.wandb`` run file, read independently of wandb's writer: a 7-byte header
    (``:W&B``, magic 0xBEE1, version), then 32 KiB blocks of chunks, each ``crc32c, length, type`` (LevelDB's log
    format: 1 full, 2 first, 3 middle, 4 last); a block's tail shorter than a chunk header is padding."""
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0)
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:       # zero padding to the end of the block
            pos += left - 7
        elif kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            records.append(pending + chunk)
        else:
            raise AssertionError(f"{path}: chunk of unknown type {kind} at byte {pos}")
    return records


def _wandb_history(run_dir) -> list[dict]:
    """Every ``run.log`` call of an offline run, as it was stored: ``{key: value, ..., "_step": step}``."""
    from wandb.proto import wandb_internal_pb2 as pb
    (path,) = run_dir.glob("run-*.wandb")
    history = []
    for raw in _wandb_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
    return history


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return wandb


@pytest.mark.slow   # wandb starts its service process: about 5 s
def test_wandb_offline_run_holds_every_scalar_at_each_step(tmp_path, offline_wandb):
    run = offline_wandb.init(project="fidkit-test", dir=str(tmp_path))
    try:
        log_wandb(_result(10.0), step=100)                  # the active run
        log_wandb(_result(7.5), run=run, step=200, prefix="val/")
    finally:
        run.finish()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    logged = [{k: v for k, v in h.items() if not k.startswith("_") or k == "_step"} for h in _wandb_history(run_dir)]
    assert logged == [{**_result(10.0).flat(prefix="fidkit/"), "_step": 100},
                      {**_result(7.5).flat(prefix="val/"), "_step": 200}]


def test_wandb_needs_a_run(offline_wandb):
    assert offline_wandb.run is None
    with pytest.raises(BadInputError, match="wandb.init"):
        log_wandb(_result(1.0))
    with pytest.raises(BadInputError, match="wandb Run"):
        log_wandb(_result(1.0), run="my-run")
