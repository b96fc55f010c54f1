"""Weights of every registered network: offline errors that say what to fetch and where, hash checks."""

import pytest

import fidkit
from fidkit.cli import main
from fidkit.errors import WeightsUnavailableError
from fidkit.extractors import Extractor, get_spec


@pytest.mark.parametrize("name", ["dinov2", "dinov2-vitb14", "clip", "clip-vitl14-336", "inception"])
def test_offline_error_names_the_file_the_url_and_where_to_put_it(name, isolated_cache):
    spec = get_spec(name)
    w = spec.weights
    with pytest.raises(WeightsUnavailableError) as e:
        Extractor.get(name, device="cpu")
    text = str(e.value)
    for part in (w.filename, w.url, w.sha256, w.env_var, str(isolated_cache / "weights" / w.filename)):
        assert part in text
    assert len(w.sha256) == 64  # every published file is pinned by its full hash


def test_a_cached_file_with_another_hash_is_refused(isolated_cache, dinov2_weights):
    target = isolated_cache / "weights" / "dinov2_vitb14_pretrain.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(open(dinov2_weights, "rb").read())  # random weights where the published file belongs
    with pytest.raises(WeightsUnavailableError, match="does not match the published hash"):
        Extractor.get("dinov2-vitb14", device="cpu")


def test_the_environment_variable_points_at_a_local_copy(monkeypatch, dinov2_weights):
    monkeypatch.setenv("FIDKIT_DINOV2_VITB14_WEIGHTS", dinov2_weights)
    ext = Extractor.get("dinov2-vitb14", device="cpu")
    assert ext.weights_sha256 == fidkit.extractors.weights.sha256_of(dinov2_weights)


def test_cli_exit_code_for_missing_weights(folders, capsys):
    a, b = folders
    assert main(["eval", str(a), str(b), "--metrics", "fd_dinov2", "--device", "cpu", "--quiet"]) == 4
    assert "dinov2_vitl14_pretrain.pth" in capsys.readouterr().err
