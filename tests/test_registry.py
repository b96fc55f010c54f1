"""Published reference statistics: the built-in table, downloads with a first-use sha256, names as sources,
``fidkit refs``, user entries.  Files are served by an HTTP server on 127.0.0.1 started here; the registry's URLs
point at it through ``FIDKIT_REFERENCES_MIRROR`` or a user entry's URL, never at the internet."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

import fidkit
import fidkit.registry as registry
from fidkit.cli import main
from fidkit.errors import BadInputError, IncomparableStatsError, ReferenceUnavailableError
from fidkit.extractors import get_spec
from fidkit.registry.entry import METRIC_NEEDS, NETWORKS, PREPROCESSING

# --------------------------------------------------------------------------------------------------------------
# A small HTTP server: files by name, a request log, and a switch that cuts a body short.


class _Server:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.truncate: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                name = self.path.lstrip("/")
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                # a dropped connection: the header promised the whole file, half of it arrives
                self.wfile.write(body[: len(body) // 2] if name in server.truncate else body)
                if name in server.truncate:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(monkeypatch):
    s = _Server()
    monkeypatch.setenv("FIDKIT_OFFLINE", "0")
    monkeypatch.setenv(registry.MIRROR_ENV, s.url)
    yield s
    s.stop()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _moments(d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(50, d))
    return x.mean(0), np.cov(x, rowvar=False)


def _user_file(cache: Path, *entries: dict, name: str = "references.toml") -> Path:
    path = cache / name
    if name.endswith(".json"):
        path.write_text(json.dumps({"reference": list(entries)}))
        return path
    lines = []
    for e in entries:
        lines.append("[[reference]]")
        for k, v in e.items():
            lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _entry(name: str, url: str, **changes) -> dict:
    e = dict(name=name, dataset="test images", resolution=48, n=10, coverage="whole",
             dataset_preprocessing="none", network="inception", preprocessing="tf", normaliser="n-1",
             spaces=["inception/pool3"], metrics=["fid"], url=url, licence="test data", fmt="npz",
             publisher="these tests")
    e.update(changes)
    return e


# --------------------------------------------------------------------------------------------------------------
# The built-in table


def test_every_builtin_entry_is_well_formed():
    entries = registry.references()
    assert len({e.name for e in entries}) == len(entries) > 150
    for e in entries:
        assert registry.problems(e) == [], e.name
        assert re.match(r"^https?://", e.url) and e.licence.strip() and e.fmt in registry.FORMATS
        assert e.normaliser in ("n-1", "n")
        for metric in e.metrics:
            assert METRIC_NEEDS[metric][0] in e.spaces, (e.name, metric)


def test_the_networks_provenance_is_what_fidkit_records_for_its_own_statistics():
    """The registry's copy of each network's identity, weights hash and preprocessing names is the extractors'."""
    for name, (identity, sha) in NETWORKS.items():
        spec = get_spec(name)
        assert spec.identity == identity and spec.weights.sha256 == sha
        assert PREPROCESSING[name] == {p.name for p in spec.preprocessing}
    e = registry.lookup("img512-edm2")
    ours = get_spec("dinov2-vitl14").provenance(NETWORKS["dinov2-vitl14"][1], "cls", "edm2")
    assert e.provenance("dinov2-vitl14/cls").differences(ours) == []


def test_the_names_the_field_uses_are_there_with_their_facts():
    adm = registry.lookup("imagenet256-adm")
    assert adm.url.endswith("/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz")
    assert adm.coverage == "whole" and adm.preprocessing == "tf" and "sfid" in adm.metrics
    for name in ("imagenet64-adm", "imagenet128-adm", "imagenet512-adm", "lsun-bedroom256-adm", "lsun-cat256-adm",
                 "lsun-horse256-adm", "imagenet256-mar", "cifar10-32-edm", "ffhq-64-edm", "afhqv2-64-edm",
                 "imagenet-64-edm", "img64-edm2", "coco2014-30k", "cifar10-train-ttur", "celeba-ttur"):
        assert registry.lookup(name) is not None, name
    clean = registry.lookup("cifar10-train-clean")
    assert clean.url == "https://www.cs.cmu.edu/~clean-fid/stats/cifar10_clean_train_32.npz"
    assert (clean.n, clean.coverage, clean.preprocessing) == (50000, "whole", "clean")
    assert registry.lookup("ffhq1024-trainval-tf").subset_seed == 0
    assert registry.lookup("lsun-church-trainfull-tf") is None  # clean-fid serves trainfull church in clean only
    assert registry.lookup("afhq-dog-train-clean-kid").fmt == "cleanfid-kid"
    assert registry.lookup("cifar10-train-clean-clip").spaces == ("clip-vitb32/embedding",)
    for name in ("img512-edm2", "cifar10-32-edm"):
        assert "CC BY-NC-SA 4.0" in registry.lookup(name).licence
    assert "not stated" in registry.lookup("cifar10-train-ttur").licence
    fvd = registry.lookup("ucf101-128-16f-2048-i3d")
    assert fvd.url == "https://content-debiased-fvd.github.io/files/i3d_ucf101_2048_res128_len16_skip1_seed0.pkl"
    assert (fvd.normaliser, fvd.n, fvd.subset_seed, fvd.metrics) == ("n", 2048, 0, ("fvd",))
    assert registry.lookup("kinetics-256-128f-full-videomae") is None  # not in cd-fvd's table


# --------------------------------------------------------------------------------------------------------------
# Downloads and the first-use sha256


def _served_entry(server, isolated_cache, name="test-real", body=None, **changes):
    body = body if body is not None else _npz(mu=_moments(4, 0)[0], sigma=_moments(4, 0)[1])
    server.files[f"{name}.npz"] = body
    _user_file(isolated_cache, _entry(name, f"https://publisher.invalid/{name}.npz", **changes))
    return body


def test_first_download_records_its_sha256_and_the_cache_answers_later(server, isolated_cache):
    body = _served_entry(server, isolated_cache)
    ref = registry.open_published("test-real")
    digest = hashlib.sha256(body).hexdigest()
    assert server.requests == ["test-real.npz"]
    e = registry.lookup("test-real")
    assert registry.cache_path(e).read_bytes() == body
    assert registry.cached(e)["sha256"] == digest and digest in ref.description
    stats = ref.stats["inception/pool3"]
    np.testing.assert_array_equal(stats.mean, _moments(4, 0)[0])
    assert stats.provenance.source == "test-real" and stats.provenance.mode == "tf"
    registry.open_published("test-real")
    assert server.requests == ["test-real.npz"]  # no second request


def test_a_truncated_download_is_refused_and_leaves_nothing(server, isolated_cache):
    _served_entry(server, isolated_cache)
    server.truncate.add("test-real.npz")
    with pytest.raises(ReferenceUnavailableError, match="truncated") as e:
        registry.open_published("test-real")
    folder = registry.cache_path(registry.lookup("test-real")).parent
    assert not folder.exists() or list(folder.iterdir()) == []
    assert "nothing was saved" in str(e.value)


def test_a_file_changed_on_the_server_after_first_use_is_refused_naming_both_hashes(server, isolated_cache):
    first = _served_entry(server, isolated_cache)
    registry.open_published("test-real")
    path = registry.cache_path(registry.lookup("test-real"))
    path.unlink()  # downloaded again: it must be the file of first use
    changed = _npz(mu=_moments(4, 1)[0], sigma=_moments(4, 1)[1])
    server.files["test-real.npz"] = changed
    with pytest.raises(ReferenceUnavailableError) as e:
        registry.open_published("test-real")
    msg = str(e.value)
    assert hashlib.sha256(first).hexdigest() in msg and hashlib.sha256(changed).hexdigest() in msg
    assert "first use" in msg and not path.exists()


def test_a_cached_file_changed_after_first_use_is_refused(server, isolated_cache):
    _served_entry(server, isolated_cache)
    registry.open_published("test-real")
    path = registry.cache_path(registry.lookup("test-real"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ReferenceUnavailableError, match="first use"):
        registry.open_published("test-real")


def test_a_pinned_sha256_is_checked_before_anything_is_saved(server, isolated_cache):
    _served_entry(server, isolated_cache, sha256="ab" * 32)
    with pytest.raises(ReferenceUnavailableError, match="pinned in the registry entry") as e:
        registry.open_published("test-real")
    assert "ab" * 32 in str(e.value)
    assert not registry.cache_path(registry.lookup("test-real")).exists()


def test_a_given_sha256_is_checked(server, isolated_cache):
    body = _served_entry(server, isolated_cache)
    with pytest.raises(ReferenceUnavailableError, match=r"given \(--sha256\)"):
        registry.open_published("test-real", sha256="cd" * 32)
    registry.open_published("test-real", sha256=hashlib.sha256(body).hexdigest())
    with pytest.raises(BadInputError, match="64 hex digits"):
        registry.open_published("test-real", sha256="xyz")


def test_offline_the_error_names_the_file_the_url_and_the_cache_path(isolated_cache, monkeypatch):
    monkeypatch.setenv("FIDKIT_OFFLINE", "1")
    e = registry.lookup("imagenet256-adm")
    with pytest.raises(ReferenceUnavailableError) as err:
        registry.open_published("imagenet256-adm")
    msg = str(err.value)
    assert e.url in msg and "VIRTUAL_imagenet256_labeled.npz" in msg
    assert str(isolated_cache / "references" / "imagenet256-adm" / "VIRTUAL_imagenet256_labeled.npz") in msg


def test_a_file_put_in_the_cache_by_hand_is_used_offline_and_its_sha256_recorded(isolated_cache):
    e = registry.lookup("cifar10-train-clean")
    path = registry.cache_path(e)
    path.parent.mkdir(parents=True)
    mu, sigma = _moments(2048, 3)
    path.write_bytes(_npz(mu=mu, sigma=sigma))
    ref = registry.open_published("cifar10-train-clean")
    assert ref.stats["inception/pool3"].n == 50000
    assert registry.cached(e)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_biased_covariance_is_made_unbiased_with_n(server, isolated_cache):
    x = np.random.default_rng(5).normal(size=(10, 3))
    _served_entry(server, isolated_cache, body=_npz(mu=x.mean(0), sigma=np.cov(x, rowvar=False, bias=True)),
                  normaliser="n", n=10)
    got = registry.open_published("test-real").stats["inception/pool3"].cov
    np.testing.assert_allclose(got, np.cov(x, rowvar=False), rtol=1e-12)


# --------------------------------------------------------------------------------------------------------------
# Names as sources


def test_two_published_files_computed_differently_are_refused_with_the_reason(server, isolated_cache, capsys):
    mu, sigma = _moments(2048, 0)
    server.files["VIRTUAL_imagenet256_labeled.npz"] = _npz(mu=mu, sigma=sigma, mu_s=mu[:7], sigma_s=sigma[:7, :7])
    server.files["cifar10_clean_train_32.npz"] = _npz(mu=mu, sigma=sigma)
    assert main(["fid", "imagenet256-adm", "cifar10-train-clean", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "preprocessing mode: 'tf' vs 'clean'" in err
    assert main(["fid", "imagenet256-adm", "imagenet256-mar", "--quiet"]) == 4  # not served: unavailable, exit 4
    assert "adm_in256_stats.npz" in capsys.readouterr().err


@pytest.mark.slow
def test_a_name_is_a_source_of_evaluate_and_of_the_cli(server, isolated_cache, folders, weights, folders_fid,
                                                        capsys):
    a, b = folders
    stats = fidkit.compute_reference(a, weights=weights, device="cpu").stats["inception/pool3"]
    server.files["test-real.npz"] = _npz(mu=stats.mean, sigma=stats.cov)
    _user_file(isolated_cache, _entry("test-real", "https://publisher.invalid/test-real.npz"))
    # random weights are not the published ones: the comparability check says so, and --force compares anyway
    with pytest.raises(IncomparableStatsError, match="network weights"):
        fidkit.evaluate("test-real", b, metrics="fid", weights=weights, device="cpu")
    r = fidkit.evaluate("test-real", b, metrics="fid", weights=weights, device="cpu", force=True)
    assert r["fid"] == pytest.approx(folders_fid("tf")["fid"], rel=1e-6)
    assert main(["fid", "test-real", str(b), "--weights", weights, "--device", "cpu", "--force", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["fid"] == pytest.approx(r["fid"], rel=1e-9)
    assert "sha256" in json.dumps(record)
    assert main(["fid", "test-real", str(b), "--weights", weights, "--device", "cpu", "--preprocessing", "clean",
                 "--quiet"]) == 3
    assert "'tf' vs 'clean'" in capsys.readouterr().err


def test_cli_sha256_checks_the_published_side(server, isolated_cache, capsys):
    body = _served_entry(server, isolated_cache, name="test-a")
    server.files["test-b.npz"] = body
    _user_file(isolated_cache, _entry("test-a", "https://p.invalid/test-a.npz"),
               _entry("test-b", "https://p.invalid/test-b.npz"))
    digest = hashlib.sha256(body).hexdigest()
    assert main(["fid", "test-a", "test-b", "--sha256", "ef" * 32, "--quiet"]) == 2  # which side?
    assert "NAME=HEX" in capsys.readouterr().err
    assert main(["fid", "test-a", "test-b", "--sha256", f"test-a={'ef' * 32}", "--quiet"]) == 4
    assert "ef" * 32 in capsys.readouterr().err
    assert main(["fid", "test-a", "test-b", "--sha256", f"test-a={digest},test-b={digest}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_a_name_both_saved_and_published_is_refused(isolated_cache, monkeypatch):
    mu, sigma = _moments(2048, 0)
    (isolated_cache / "stats").mkdir()
    np.savez(isolated_cache / "stats" / "cifar10-train-clean.npz", mu=mu, sigma=sigma)
    with pytest.raises(BadInputError, match="both statistics you saved .* and a published reference"):
        fidkit.data.sources.open_source("cifar10-train-clean")
    assert main(["stats", "x", "--name", "imagenet256-adm"]) == 2


def test_an_unknown_name_lists_close_published_names():
    with pytest.raises(BadInputError, match="close names: .*imagenet256-adm"):
        fidkit.data.sources.open_source("imagenet256-adn")


# --------------------------------------------------------------------------------------------------------------
# fidkit refs


def test_refs_lists_every_entry_and_shows_one_in_full(capsys):
    assert main(["refs"]) == 0
    out = capsys.readouterr().out
    for e in registry.references():
        assert e.name in out and e.url in out
    assert "CC BY-NC-SA 4.0" in out and "not cached" in out
    assert main(["refs", "img512-edm2"]) == 0
    full = capsys.readouterr().out
    assert "center-crop-dhariwal" in full and "dinov2-vitl14:edm2" in full and "fd_dinov2" in full
    assert main(["refs", "imagenet*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"imagenet64-adm", "imagenet256-adm"}
    assert all(r["name"].startswith("imagenet") for r in rows)


def test_refs_shows_the_recorded_sha256_once_cached(server, isolated_cache, capsys):
    body = _served_entry(server, isolated_cache)
    registry.open_published("test-real")
    assert main(["refs", "test-real", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["cached"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["origin"] == str(isolated_cache / "references.toml")
    assert main(["refs"]) == 0
    assert f"cached, sha256 {hashlib.sha256(body).hexdigest()}" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------------------
# User entries


def test_user_entries_from_the_cache_and_the_environment(isolated_cache, tmp_path, monkeypatch):
    _user_file(isolated_cache, _entry("mine-a", "https://p.invalid/a.npz"))
    other = _user_file(tmp_path, _entry("mine-b", "https://p.invalid/b.npz", fmt="npz"), name="more.json")
    monkeypatch.setenv(registry.USER_ENV, str(other))
    assert registry.lookup("mine-a").origin == str(isolated_cache / "references.toml")
    assert registry.lookup("mine-b").dataset == "test images"


@pytest.mark.parametrize("change, field", [
    (dict(colour="red"), "colour"),
    (dict(fmt="hdf5"), "fmt"),
    (dict(normaliser="n+1"), "normaliser"),
    (dict(url="ftp://x/y.npz"), "url"),
    (dict(n="many"), "'n'"),
    (dict(metrics=["fid", "sfid"]), "sfid needs the space inception/spatial"),
    (dict(preprocessing="lanczos"), "preprocessing"),
])
def test_an_invalid_user_entry_names_the_file_and_the_field(isolated_cache, change, field):
    entry = _entry("mine", "https://p.invalid/a.npz")
    entry.update(change)
    path = _user_file(isolated_cache, entry)
    with pytest.raises(BadInputError) as e:
        registry.lookup("mine")
    assert str(path) in str(e.value) and field in str(e.value)


def test_a_missing_field_is_named(isolated_cache):
    entry = _entry("mine", "https://p.invalid/a.npz")
    del entry["licence"]
    _user_file(isolated_cache, entry)
    with pytest.raises(BadInputError, match="missing field 'licence'"):
        registry.references()


def test_a_user_entry_may_not_shadow_a_builtin_one(isolated_cache):
    path = _user_file(isolated_cache, _entry("imagenet256-adm", "https://p.invalid/a.npz"))
    with pytest.raises(BadInputError, match="may not shadow") as e:
        registry.lookup("imagenet256-adm")
    assert str(path) in str(e.value)


# --------------------------------------------------------------------------------------------------------------
# Every publisher format through the registry


def test_a_pickled_reference_is_converted_once_and_read_with_the_entrys_provenance(server, isolated_cache):
    import pickle
    (mu_a, sigma_a), (mu_b, sigma_b) = _moments(4, 3), _moments(6, 4)
    # NVlabs/edm2 calculate_metrics.py's layout: a pickle of plain dicts of float64 arrays
    server.files["test-edm2.pkl"] = pickle.dumps({"fid": {"mu": mu_a, "sigma": sigma_a},
                                                  "fd_dinov2": {"mu": mu_b, "sigma": sigma_b}, "num_images": 50})
    _user_file(isolated_cache, _entry("test-edm2", "https://publisher.invalid/test-edm2.pkl", fmt="edm2-pkl", n=50,
                                      network="inception,dinov2-vitl14",
                                      preprocessing="inception=tf,dinov2-vitl14=edm2",
                                      spaces=["inception/pool3", "dinov2-vitl14/cls"], metrics=["fid", "fd_dinov2"]))
    ref = registry.open_published("test-edm2")
    fid, dino = ref.stats["inception/pool3"], ref.stats["dinov2-vitl14/cls"]
    np.testing.assert_array_equal(fid.mean, mu_a)
    np.testing.assert_allclose(dino.cov, sigma_b, rtol=1e-14)  # symmetrised on load
    assert fid.n == dino.n == 50
    assert (fid.provenance.source, fid.provenance.mode) == ("test-edm2", "tf")
    assert (dino.provenance.source, dino.provenance.mode) == ("test-edm2", "edm2")
    converted = registry.cache_path(registry.lookup("test-edm2")).with_name("test-edm2.fidkit.npz")
    with np.load(converted, allow_pickle=False) as z:  # fidkit's own format: readable without pickle
        assert "inception/pool3" not in z.files and "mu" in z.files
    stamp = converted.stat().st_mtime_ns
    registry.open_published("test-edm2")
    assert converted.stat().st_mtime_ns == stamp and server.requests == ["test-edm2.pkl"]


def test_a_published_adm_batch_serves_its_moments_and_its_images(server, isolated_cache):
    from fidkit.data.sources import open_source
    images = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    (mu, sigma), (mu_s, sigma_s) = _moments(4, 5), _moments(3, 6)
    server.files["test-adm.npz"] = _npz(arr_0=images, arr_1=np.arange(5), mu=mu, sigma=sigma, mu_s=mu_s,
                                        sigma_s=sigma_s)
    _user_file(isolated_cache, _entry("test-adm", "https://publisher.invalid/test-adm.npz", fmt="adm-batch",
                                      spaces=["inception/pool3", "inception/spatial"],
                                      metrics=["fid", "sfid", "adm_pr"]))
    src = open_source("test-adm")
    np.testing.assert_array_equal(src.reference.stats["inception/spatial"].mean, mu_s)
    assert src.reference.stats["inception/pool3"].provenance.source == "test-adm"
    assert src.images is not None and src.images.count == 5
    assert open_source("test-adm", limit=3).images.count == 3
