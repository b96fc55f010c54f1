"""Statistics files (issue 16): what can be checked inside a file is checked, and a tampered file is refused with
the file and the key named, never a traceback and never a silent number."""

import zipfile

import numpy as np
import pytest

from fidkit.data.sources import StatsSource, open_source
from fidkit.errors import BadInputError
from fidkit.stats.moments import FeatureStats
from fidkit.stats.provenance import Provenance
from fidkit.stats.reference import Reference

POOL3, OTHER = "inception/pool3", "tiny/emb"


def _valid(tmp_path, n=12, d=4, e=3):
    rng = np.random.default_rng(0)
    f1 = rng.standard_normal((n, d)).astype(np.float32)
    f2 = rng.standard_normal((n, e)).astype(np.float32)
    p1 = Provenance(extractor="inception-2015-12-05", layer="pool3", mode="tf")
    p2 = Provenance(extractor="tiny", layer="emb", mode="x")
    ref = Reference({POOL3: FeatureStats.from_features(f1, p1), OTHER: FeatureStats.from_features(f2, p2)},
                    {POOL3: f1, OTHER: f2})
    return ref.save(tmp_path / "ref.npz")


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def _refused(path, *words):
    for load in (Reference.load, lambda p: open_source(str(p))):
        with pytest.raises(BadInputError) as e:
            load(path)
        assert str(path) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_the_valid_file_loads(tmp_path):
    ref = Reference.load(_valid(tmp_path))
    assert ref.stats[POOL3].n == 12 and ref.features[OTHER].shape == (12, 3)


@pytest.mark.parametrize("key, value, words", [
    ("n", np.array(5000), ["'inception/pool3/features' has 12 rows", "'n' = 5000"]),
    ("tiny/emb/n", np.array(13), ["'tiny/emb/features' has 12 rows", "'tiny/emb/n' = 13"]),
    ("n", np.array(12.5), ["'n'", "whole number"]),
    ("n", np.array(1), ["'n'", "at least 2"]),
    ("n", np.array(-4), ["'n'", "at least 2"]),
    ("n", np.array(np.nan), ["'n'", "whole number"]),
    ("n", np.array([12, 12]), ["'n'", "one integer"]),
    ("n", np.array("12"), ["'n'", "one integer"]),
    ("n", np.array(True), ["'n'", "one integer"]),
    ("mu", np.array(0.5), ["'mu'", "vector"]),
    ("mu", np.zeros(0), ["'mu'", "vector"]),
    ("sigma", np.array(1.0), ["'mu'/'sigma'", "does not match"]),
    ("mu", np.zeros(4, complex), ["'mu'", "real numbers"]),
    ("inception/pool3/features", np.zeros((12, 0), np.float32), ["'inception/pool3/features'", "2-D"]),
    ("inception/pool3/features", np.zeros((0, 4), np.float32), ["'inception/pool3/features'", "2-D"]),
    ("inception/pool3/features", np.zeros(4, np.float32), ["'inception/pool3/features'", "2-D"]),
    ("inception/pool3/features", np.zeros((12, 5), np.float32), ["5 columns", "'mu' has 4"]),
    ("inception/pool3/features", np.full((12, 4), np.nan, np.float32), ["NaN"]),
    ("tiny/emb/features", np.zeros((12, 3), np.float32), ["mean of 'tiny/emb/features' differs from 'tiny/emb/mu'"]),
    ("provenance", np.array(["{}", "{}"]), ["'provenance'", "one JSON string"]),
    ("provenance", np.array(3), ["'provenance'", "one JSON string"]),
    ("provenance", np.array("[1]"), ["'provenance'", "not an object"]),
])
def test_tampered_keys_are_refused_with_file_and_key(tmp_path, key, value, words):
    arrays = _arrays(_valid(tmp_path))
    arrays[key] = value
    _refused(_write(tmp_path / "bad.npz", arrays), *words)


@pytest.mark.parametrize("missing", ["sigma", "tiny/emb/mu", "tiny/emb/sigma", "mu"])
def test_half_of_a_moment_pair_is_refused(tmp_path, missing):
    arrays = _arrays(_valid(tmp_path))
    del arrays[missing]
    other = missing.replace("sigma", "mu") if "sigma" in missing else missing.replace("mu", "sigma")
    _refused(_write(tmp_path / "bad.npz", arrays), f"'{other}'", f"no '{missing}'")


def test_foreign_files_still_load(tmp_path):
    """pytorch-fid / clean-fid / ADM layouts: 1-D mu, d x d sigma, no n, no provenance; a 1 x d mu too."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 5))
    for mu in (x.mean(0), x.mean(0)[None, :], x.mean(0).astype(np.float32)):
        path = _write(tmp_path / "foreign.npz", {"mu": mu, "sigma": np.cov(x, rowvar=False)})
        s = Reference.load(path).stats[POOL3]
        assert s.n is None and s.dim == 5
    path = _write(tmp_path / "adm.npz", {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False), "mu_s": x.mean(0),
                                         "sigma_s": np.cov(x, rowvar=False), "arr_0": np.zeros((2, 4, 4, 3), np.uint8)})
    assert set(Reference.load(path).stats) == {POOL3, "inception/spatial"}


# --- property test: many mutations, each loads consistently or is refused naming the file -----------------------

def _mutations(arrays, rng):
    """One random change of one key: deleted, reshaped, retyped, a value altered, or rows/columns cut."""
    key = sorted(arrays)[rng.integers(len(arrays))]
    a = arrays[key]
    kind = rng.integers(8)
    out = dict(arrays)
    if kind == 0:
        del out[key]
    elif kind == 1:  # reshape: scalar, flat, transposed, extra axis, empty
        choices = [lambda v: np.asarray(v).reshape(-1)[:1].reshape(()) if np.asarray(v).size else np.array(0),
                   lambda v: np.asarray(v).reshape(-1), lambda v: np.asarray(v).T,
                   lambda v: np.asarray(v)[None], lambda v: np.asarray(v).reshape(-1)[:0]]
        out[key] = choices[rng.integers(len(choices))](a)
    elif kind == 2:  # retype
        dtypes = [np.float16, np.float32, np.int8, np.int64, np.uint16, bool, np.complex64, "U5", "S5"]
        try:
            out[key] = np.asarray(a).astype(dtypes[rng.integers(len(dtypes))])
        except (ValueError, TypeError):
            out[key] = np.array("junk")
    elif kind == 3:  # the count altered
        nkey = ["n", "tiny/emb/n", "n_s"][rng.integers(3)]
        out[nkey] = np.array([0, 1, 2, 11, 13, 5000, -3, 2**62, 12.0, 12.5, np.inf][rng.integers(11)])
    elif kind == 4 and np.asarray(a).ndim >= 1 and np.asarray(a).shape[0] > 1:  # rows cut
        out[key] = np.asarray(a)[: rng.integers(np.asarray(a).shape[0])]
    elif kind == 5 and np.asarray(a).ndim == 2 and np.asarray(a).shape[1] > 1:  # columns cut
        out[key] = np.asarray(a)[:, : rng.integers(np.asarray(a).shape[1])]
    elif kind == 6 and np.asarray(a).dtype.kind == "f" and np.asarray(a).size:  # one value changed
        b = np.array(a)
        b.reshape(-1)[rng.integers(b.size)] = [np.nan, np.inf, 1e30, -1.0, 0.0][rng.integers(5)]
        out[key] = b
    else:  # a key of the right name but another space's content
        other = sorted(arrays)[rng.integers(len(arrays))]
        out[key] = arrays[other]
    return out


def _consistent(ref: Reference):
    for space, s in ref.stats.items():
        assert s.mean.ndim == 1 and s.dim >= 1 and s.cov.shape == (s.dim, s.dim)
        assert np.isfinite(s.mean).all() and np.isfinite(s.cov).all()
        assert s.n is None or (isinstance(s.n, int) and s.n >= 2)
    for space, f in ref.features.items():
        assert f.ndim == 2 and f.shape[0] >= 1 and f.shape[1] >= 1 and np.isfinite(f).all()
        if space in ref.stats:
            s = ref.stats[space]
            assert f.shape[1] == s.dim
            assert s.n is None or f.shape[0] == s.n


@pytest.mark.parametrize("seed", range(40))
def test_mutated_files_load_consistently_or_are_refused_naming_the_file(tmp_path, seed):
    rng = np.random.default_rng(seed)
    valid = _arrays(_valid(tmp_path))
    for i in range(10):
        arrays = valid
        for _ in range(1 + rng.integers(2)):  # one or two changes
            arrays = _mutations(arrays, rng)
        path = tmp_path / f"m{i}.npz"
        np.savez(path, **arrays)
        for load in (Reference.load, lambda p: open_source(str(p)).reference):
            try:
                ref = load(path)
            except BadInputError as e:
                assert str(path) in str(e)
                continue
            _consistent(ref)
    assert zipfile  # the format is a zip archive of .npy members


def test_open_source_gives_statistics_for_a_valid_file(tmp_path):
    assert isinstance(open_source(str(_valid(tmp_path))), StatsSource)
