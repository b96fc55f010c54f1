"""Weights: resolution order, hash checks, atomic download, offline errors, no pickle."""

import dataclasses
import hashlib
import pickle

import pytest
import torch

from fidkit.extractors import weights as W
from fidkit.extractors.inception import WEIGHTS as INCEPTION_WEIGHTS
from fidkit.errors import WeightsUnavailableError
from fidkit.extractors.runtime import InceptionExtractor


def _spec_for(path, **changes):
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return dataclasses.replace(INCEPTION_WEIGHTS, url=path.as_uri(), sha256=digest,
                               filename=f"random-{digest[:8]}.pth", **changes)


def test_explicit_path_wins_and_sha256_is_recorded(weights):
    path, sha = W.resolve(INCEPTION_WEIGHTS, weights)
    assert str(path) == weights
    assert sha == hashlib.sha256(open(weights, "rb").read()).hexdigest()
    assert InceptionExtractor(weights, "cpu").provenance("tf").weights_sha256 == sha


def test_environment_variable_is_used(weights, monkeypatch):
    monkeypatch.setenv("FIDKIT_INCEPTION_WEIGHTS", weights)
    assert str(W.resolve(INCEPTION_WEIGHTS)[0]) == weights


def test_offline_error_says_what_to_download_and_where(isolated_cache):
    with pytest.raises(WeightsUnavailableError) as e:
        W.resolve(INCEPTION_WEIGHTS)
    msg = str(e.value)
    assert INCEPTION_WEIGHTS.url in msg
    assert "weights-inception-2015-12-05-6726825d.pth" in msg
    assert str(isolated_cache / "weights" / "weights-inception-2015-12-05-6726825d.pth") in msg
    assert "--weights" in msg and "FIDKIT_INCEPTION_WEIGHTS" in msg


def test_failed_download_is_the_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FIDKIT_OFFLINE", "0")
    spec = dataclasses.replace(INCEPTION_WEIGHTS, url=(tmp_path / "missing.pth").as_uri())
    with pytest.raises(WeightsUnavailableError, match="download from .*missing.pth failed"):
        W.resolve(spec)
    assert not any(INCEPTION_WEIGHTS.cache_path.parent.glob("*")) if INCEPTION_WEIGHTS.cache_path.parent.exists() else True


def test_download_is_hash_checked_and_atomic(weights, tmp_path):
    import pathlib
    spec = _spec_for(pathlib.Path(weights))
    path, sha = W.fetch(spec)
    assert path == spec.cache_path and path.read_bytes() == open(weights, "rb").read()
    assert sha == spec.sha256
    # a second resolve finds it in the cache without downloading
    assert W.resolve(dataclasses.replace(spec, url="file:///nonexistent"), download=False)[0] == path


def test_download_with_wrong_hash_saves_nothing(weights):
    import pathlib
    spec = dataclasses.replace(_spec_for(pathlib.Path(weights)), sha256="0" * 64)
    with pytest.raises(WeightsUnavailableError, match="nothing was saved"):
        W.fetch(spec)
    assert not spec.cache_path.exists()
    assert list(spec.cache_path.parent.iterdir()) == []


def test_corrupt_cached_file_is_refused(isolated_cache):
    cached = INCEPTION_WEIGHTS.cache_path
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    with pytest.raises(WeightsUnavailableError, match="corrupt or truncated"):
        W.resolve(INCEPTION_WEIGHTS)


def test_hash_in_file_name_is_checked(weights, tmp_path):
    named = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    named.write_bytes(open(weights, "rb").read())
    with pytest.raises(WeightsUnavailableError, match="in its file name"):
        W.resolve(INCEPTION_WEIGHTS, named)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        W.resolve(INCEPTION_WEIGHTS, tmp_path / "nope.pth")


class _Boom:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_weights_are_loaded_without_pickle(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"Conv2d_1a_3x3.conv.weight": _Boom()}, f, protocol=2)
    with pytest.raises(WeightsUnavailableError,
                       match=r"evil\.pth: not a readable network checkpoint: it cannot be loaded with "
                             r"torch\.load\(weights_only=True\)"):
        InceptionExtractor(evil, "cpu")


def test_published_spec_is_consistent():
    assert INCEPTION_WEIGHTS.sha256.startswith("6726825d")
    assert INCEPTION_WEIGHTS.url.endswith(INCEPTION_WEIGHTS.filename)
    assert all("6726825d" in alt for alt in INCEPTION_WEIGHTS.alternatives)
    assert torch  # weights load through torch.load(weights_only=True)
