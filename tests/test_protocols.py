"""Protocol cards and the comparability verdict.

The verdict reads counts and provenance, so most tests build a run that matches a card from the card's own
published settings (the extractor registry's published sha256, fidkit's preprocessing names) and change one thing
at a time; a few run end to end with random Inception weights and a dozen images, where N (and the weights) must be
named as deviations.
"""

from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pytest

import fidkit
from fidkit.cli import main
from fidkit.errors import BadInputError
from fidkit.extractors import get_spec
from fidkit.metrics.catalog import METRICS
from fidkit.protocols import PROTOCOLS, Protocol, protocol, verdict
from fidkit.request import RunOptions, resolve
from fidkit.stats.moments import FeatureStats
from fidkit.stats.reference import Reference
from helpers import smooth_images, write_folder

#: Another network for each card network: a task moved there is a network deviation.
OTHER_NETWORK = {"inception": "dinov2-vitb14", "dinov2-vitl14": "dinov2-vitb14", "videomae-v2": "i3d",
                 "i3d": "videomae-v2"}


def _tap(extractor: str, metric: str) -> str:
    spec = get_spec(extractor)
    role = {"sfid": "spatial", "is": "logits", "adm_is": "logits"}.get(metric, "embedding")
    return spec.tap_for(role).name


def _clip_text(card: Protocol) -> str | None:
    c = card.clip_values
    return None if c is None else f"{c['length']} frames, stride {c['stride']}, from frame {c['start']}"


def _spaces(card: Protocol, tasks, modes: dict[str, str] | None = None, sha: dict[str, str] | None = None):
    """Provenance of every space the tasks read, with the published weights and the card's preprocessing."""
    out = {}
    for metric, extractor in tasks:
        spec = get_spec(extractor)
        net = card.network(extractor)
        mode = (modes or {}).get(extractor) or (net.preprocessing or net.nearest if net else spec.default_preprocessing)
        weights = (sha or {}).get(extractor, spec.weights.sha256)
        tap = _tap(extractor, metric)
        p = spec.provenance(weights, tap, mode)
        if spec.modality == "video":
            p = p.__class__(**{**p.to_dict(), "clip": _clip_text(card)})
        out[f"{spec.name}/{tap}"] = p
    return out


class _Entry:
    """The fields of a registry entry (fidkit.registry.PublishedReference) the verdict reads."""

    def __init__(self, publisher, preprocessing=None):
        self.publisher, self.preprocessing = publisher, preprocessing


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """A stand-in registry: each card's publisher has one entry, ``<card>-ref`` (the real registry is reg's)."""
    entries = {f"{c.name}-ref": _Entry(f"Someone ({c.reference_publisher}, README)")
               for c in PROTOCOLS.values() if c.reference_publisher}
    entries["legacy-tf-ref"] = _Entry("CMU (GaParmar/clean-fid)", "tf")
    monkeypatch.setattr("fidkit.protocols.judge._lookup", entries.get)
    return entries


def matching(card: Protocol) -> dict:
    """The verdict's inputs for a run that does what ``card`` pins."""
    if card.references:
        reference = [card.references[0]]
    elif card.reference_publisher:
        reference = [f"{card.name}-ref"]
    else:
        reference = ["/data/train"]
    return dict(n_generated=card.n_generated, n_reference=card.n_reference, spaces=_spaces(card, card.tasks),
                tasks=card.tasks, options=card.option_values, reference=reference, normaliser=card.normaliser,
                jpeg_samples=0)


def new_lines(card: Protocol, **changes) -> list[str]:
    """The deviations that ``changes`` add to a matching run's."""
    base = verdict(card.name, **matching(card)).deviations
    return [d for d in verdict(card.name, **{**matching(card), **changes}).deviations if d not in base]


CARDS = sorted(PROTOCOLS)


def test_the_cards_asked_for_are_there():
    assert {"adm", "edm2", "dgm-eval", "clean-fid", "mar", "cd-fvd", "stylegan-v", "coco30k"} <= set(PROTOCOLS)
    assert protocol("torch-fidelity") is PROTOCOLS["mar"]
    assert PROTOCOLS["adm"].metrics == "fid,sfid,adm_is,adm_pr"
    assert "minimum" in PROTOCOLS["edm2"].reporting


@pytest.mark.parametrize("name", CARDS)
def test_card_names_fidkit_networks_and_preprocessing(name):
    card = PROTOCOLS[name]
    for net in card.networks:
        spec = get_spec(net.extractor)
        names = {p.name for p in spec.preprocessing}
        assert (net.preprocessing or net.nearest) in names
    for _, extractor in card.tasks:
        assert card.network(extractor) is not None


@pytest.mark.parametrize("name", [n for n in CARDS if n != "coco30k"])
def test_a_run_that_matches_the_card_is_comparable(name):
    v = verdict(name, **matching(PROTOCOLS[name]))
    assert v.comparable and v.deviations == () and v.unchecked == ()
    assert v.summary == f"comparable with {name} numbers"


def test_coco30k_has_no_fidkit_preprocessing_and_says_so():
    v = verdict("coco30k", **matching(PROTOCOLS["coco30k"]))
    assert not v.comparable
    assert len(v.deviations) == 1 and "no fidkit preprocessing reproduces it" in v.deviations[0]


@pytest.mark.parametrize("name", CARDS)
def test_sample_count(name):
    card = PROTOCOLS[name]
    (line,) = new_lines(card, n_generated=10_000)
    assert line == f"N = 10,000 generated samples where {name} uses {card.n_generated:,}"


def test_reference_count_where_the_card_fixes_it():
    (line,) = new_lines(PROTOCOLS["stylegan-v"], n_reference=5000)
    assert line == "N = 5,000 reference samples where stylegan-v uses 2,048"


@pytest.mark.parametrize("name", CARDS)
def test_network(name):
    card = PROTOCOLS[name]
    metric, extractor = card.tasks[0]
    tasks = ((metric, OTHER_NETWORK[extractor]),) + card.tasks[1:]
    (line,) = new_lines(card, tasks=tasks, spaces=_spaces(card, tasks))
    assert line.startswith(f"network: {metric} computed in {OTHER_NETWORK[extractor]} where {name} computes it "
                           f"in {extractor}")


@pytest.mark.parametrize("name", CARDS)
def test_weights(name):
    card = PROTOCOLS[name]
    extractor = card.networks[0].extractor
    (line,) = new_lines(card, spaces=_spaces(card, card.tasks, sha={extractor: "ab" * 32}))
    assert line.startswith(f"network weights: {extractor} with weights sha256 abababababab")
    assert get_spec(extractor).weights.sha256[:12] in line


@pytest.mark.parametrize("name", CARDS)
def test_preprocessing(name):
    card = PROTOCOLS[name]
    net = card.networks[0]
    used = net.preprocessing or net.nearest
    other = next((p.name for p in get_spec(net.extractor).preprocessing if p.name != used), used + "+center-crop")
    (line,) = new_lines(card, spaces=_spaces(card, card.tasks, modes={net.extractor: other}))
    assert line.startswith(f"preprocessing: {net.extractor} with {other} where {name} uses")


@pytest.mark.parametrize("name", [n for n in CARDS if PROTOCOLS[n].references or PROTOCOLS[n].reference_publisher])
def test_reference(name):
    (line,) = new_lines(PROTOCOLS[name], reference=["/data/my_stats.npz"])
    assert line.startswith(f"reference: /data/my_stats.npz where {name} uses a registry reference")


def test_a_registry_entry_of_another_publisher_or_preprocessing_is_a_deviation(registry):
    (line,) = new_lines(PROTOCOLS["clean-fid"], reference=["edm2-ref"])
    assert line.startswith("reference: edm2-ref where clean-fid uses")
    (line,) = new_lines(PROTOCOLS["clean-fid"], reference=["legacy-tf-ref"])   # clean-fid's, but legacy_tensorflow
    assert line.startswith("reference: legacy-tf-ref where clean-fid uses")


@pytest.mark.parametrize("name", CARDS)
def test_normaliser(name):
    card = PROTOCOLS[name]
    other = "n" if card.normaliser == "n-1" else "n-1"
    (line,) = new_lines(card, normaliser=other)
    assert line.startswith("normaliser: covariances divided by N") and f"where {name} divides by" in line


@pytest.mark.parametrize("name", [n for n in CARDS if PROTOCOLS[n].options])
def test_metric_option(name):
    card = PROTOCOLS[name]
    option, wanted = card.options[0]
    (line,) = new_lines(card, options={**card.option_values, option: wanted + 1})
    assert line == f"metric setting: {option} = {wanted + 1} where {name} uses {wanted}"


def test_metric_variant_is_a_metric_setting():
    card = PROTOCOLS["adm"]
    tasks = tuple(("is", e) if m == "adm_is" else (m, e) for m, e in card.tasks)
    (line,) = new_lines(card, tasks=tasks)
    assert line == "metric setting: is where adm uses adm_is"


@pytest.mark.parametrize("name", [n for n in CARDS if PROTOCOLS[n].clip])
def test_clip_sampling(name):
    card = PROTOCOLS[name]
    spaces = {s: p.__class__(**{**p.to_dict(), "clip": "16 frames, stride 2, from frame 0"})
              for s, p in _spaces(card, card.tasks).items()}
    (line,) = new_lines(card, spaces=spaces)
    assert line.startswith("clip sampling: 16 frames, stride 2, from frame 0 where")


@pytest.mark.parametrize("name", CARDS)
def test_jpeg_samples(name):
    (line,) = new_lines(PROTOCOLS[name], jpeg_samples=37)
    assert line.startswith("JPEG samples: 37 generated samples were read from JPEG files")


def test_a_metric_outside_the_card_is_listed_not_a_deviation():
    card = PROTOCOLS["adm"]
    v = verdict("adm", **{**matching(card), "tasks": card.tasks + (("kd", "inception"),)})
    assert v.comparable and v.uncovered == ("kd",)


def test_without_provenance_nothing_is_claimed():
    card = PROTOCOLS["mar"]
    v = verdict("mar", **{**matching(card), "spaces": {}})
    assert not v.comparable and not v.deviations
    assert "no provenance" in v.unchecked[0]
    assert v.summary == "comparability with mar numbers could not be confirmed"
    v = verdict("mar", **{**matching(card), "n_generated": None})
    assert not v.comparable and v.unchecked[0].startswith("N: the number of generated samples is unknown")


def test_without_a_protocol_the_reference_card_is_used():
    card = PROTOCOLS["edm2"]
    v = verdict(None, **matching(card))
    assert v.protocol == "edm2" and v.comparable and "img512-edm2 is edm2's" in v.basis
    # ADM's ImageNet-256 statistics serve both adm and mar: the card the run follows is chosen, the other named
    mar = PROTOCOLS["mar"]
    v = verdict(None, **{**matching(mar), "reference": ["imagenet256-adm"]})
    assert v.protocol == "mar" and v.comparable and "also used by adm" in v.basis


def test_without_a_protocol_or_a_known_reference_no_protocol_applies():
    v = verdict(None, **{**matching(PROTOCOLS["adm"]), "reference": ["/data/stats.npz"]})
    assert v.protocol is None and not v.comparable
    assert v.summary.startswith("no published protocol applies")


def test_unknown_protocol_is_named():
    with pytest.raises(BadInputError, match="unknown protocol 'adm2'.*adm, edm2"):
        protocol("adm2")


# ---- applying a card at resolution ----

def test_card_sets_networks_preprocessing_and_metrics():
    r = resolve(protocol="edm2")
    assert r.plan.preprocessing == {"dinov2-vitl14": "edm2", "inception": "tf"}
    assert set(r.plan.metric_names) == {"fd"} and r.protocol is PROTOCOLS["edm2"]


def test_explicit_choices_stay():
    r = resolve(preprocessing="dinov2=dgm-eval", protocol="edm2")
    assert r.plan.preprocessing["dinov2-vitl14"] == "dgm-eval"
    r = resolve(protocol="mar")
    assert r.options.is_splits == 10 and r.options.seed == 2020
    assert resolve(protocol="mar", is_splits=5).options.is_splits == 5


def test_card_sets_the_clip_of_video_protocols():
    r = resolve(protocol="stylegan-v")
    assert r.plan.extractors == ["i3d"] and r.clip.describe() == "16 frames, stride 1, from frame 0"
    assert resolve(protocol="stylegan-v", run=RunOptions(clip={"length": 8})).clip.length == 8


def test_card_metrics_missing_here_are_left_out_with_a_note():
    r = resolve(protocol="adm")
    missing = [m for m in ("adm_is", "adm_pr") if m not in METRICS]
    assert all(any(f"metric {m} is not available" in n for n in r.protocol_notes) for m in missing)
    assert {"fd", "sfid"} <= set(r.plan.metric_names)


# ---- end to end ----

@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("proto")
    return (write_folder(base / "real", smooth_images(12, 40, 0)),
            write_folder(base / "fake", smooth_images(12, 40, 1)),
            write_folder(base / "fake_jpeg", smooth_images(12, 40, 1), fmt="jpg"))


@pytest.mark.slow   # two feature passes and IS on CPU: ~10 s
def test_cli_eval_names_the_deviations(image_folders, weights, tmp_path, capsys):
    real, fake, _ = image_folders
    log = tmp_path / "log.jsonl"
    assert main(["eval", str(real), str(fake), "--protocol", "mar", "--weights", weights, "--device", "cpu",
                 "--json", "--quiet", "--log", str(log)]) == 0
    record = json.loads(capsys.readouterr().out)
    v = record["verdict"]
    assert v["protocol"] == "mar" and not v["comparable"]
    assert "N = 12 generated samples where mar uses 50,000" in v["deviations"]
    assert any(d.startswith("network weights: inception") for d in v["deviations"])
    assert any(d.startswith(f"reference: {real}") for d in v["deviations"])
    assert {"fid", "is"} <= set(record) and record["options"]["is_splits"] == 10
    assert json.loads(log.read_text().splitlines()[-1])["verdict"] == v
    assert main(["fid", str(real), str(fake), "--protocol", "mar", "--weights", weights, "--device", "cpu",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "verdict: not comparable with mar numbers" in out
    assert "  - N = 12 generated samples where mar uses 50,000" in out


def test_evaluate_names_jpeg_samples(image_folders, weights):
    real, _, fake_jpeg = image_folders
    with pytest.warns(fidkit.FidkitWarning):
        r = fidkit.fid(real, fake_jpeg, protocol="clean-fid", weights=weights, device="cpu")
    assert r.provenance.mode == "clean" and r.jpeg_samples == {str(fake_jpeg): 12}
    assert any(d.startswith("JPEG samples: 12 generated samples") for d in r.verdict.deviations)
    assert "N = 12 generated samples where clean-fid uses 50,000" in r.verdict.deviations
    assert r.to_dict()["jpeg_samples"] == {str(fake_jpeg): 12}


def test_without_a_protocol_a_result_says_none_applies(image_folders, weights):
    real, fake, _ = image_folders
    with pytest.warns(fidkit.FidkitWarning):
        r = fidkit.fid(real, fake, weights=weights, device="cpu")
    assert r.verdict.protocol is None and not r.verdict.comparable


def test_published_statistics_at_the_protocol_count_are_comparable():
    """Two statistics with the published network's provenance at N = 50,000, the reference named as the card's:
    the end-to-end path (request, session, result) finds nothing to name."""
    spec = get_spec("inception")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16))   # the dimension is not part of the verdict: small keeps the FD fast

    def stats(source):
        p = spec.provenance(spec.weights.sha256, "pool3", "tf", source=source)
        return FeatureStats.from_moments(x.mean(0), np.cov(x, rowvar=False), n=50_000, provenance=p)

    ref = Reference({"inception/pool3": stats("imagenet256-adm")}, {}, "imagenet256-adm")
    r = fidkit.evaluate(ref, Reference({"inception/pool3": stats("samples")}, {}, "samples"), metrics="fid",
                        protocol="mar")
    assert r.verdict.comparable, r.verdict.deviations
    assert r.to_dict()["verdict"]["summary"] == "comparable with mar numbers"
    r = fidkit.evaluate(ref, Reference({"inception/pool3": stats("samples")}, {}, "samples"), metrics="fid")
    assert r.verdict.protocol in {"adm", "mar"} and "imagenet256-adm" in r.verdict.basis


def test_protocols_command_lists_the_cards(capsys):
    assert main(["protocols", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == list(PROTOCOLS)
    assert main(["protocols", "edm2"]) == 0
    assert "minimum" in capsys.readouterr().out


def test_the_registry_entries_find_their_cards(monkeypatch):
    """With reg's registry installed, its entries lead to the cards that use them (skipped without it)."""
    registry = pytest.importorskip("fidkit.registry")
    monkeypatch.setattr("fidkit.protocols.judge._lookup", registry.lookup)
    from fidkit.protocols import reference_cards
    expected = {"imagenet256-adm": {"adm", "mar"}, "imagenet256-mar": {"mar"}, "img512-edm2": {"edm2"},
                "coco2014-30k": {"coco30k"}}
    for name, cards in expected.items():
        if registry.lookup(name) is not None:
            assert {c.name for c in reference_cards([name])[1]} == cards, name
    for entry in registry.references():
        found = {c.name for c in reference_cards([entry.name])[1]}
        if "clean-fid" in entry.publisher.lower() and entry.preprocessing != "clean":
            assert "clean-fid" not in found, entry.name


def _scipy_fd(x: np.ndarray, y: np.ndarray, ddof: int) -> float:
    """The Fréchet distance of two feature sets with covariances divided by N - ddof, through scipy's sqrtm."""
    from scipy import linalg
    ca, cb = np.cov(x, rowvar=False, ddof=ddof), np.cov(y, rowvar=False, ddof=ddof)
    root = linalg.sqrtm(ca @ cb).real
    d = x.mean(0) - y.mean(0)
    return float(d @ d + np.trace(ca) + np.trace(cb) - 2 * np.trace(root))


def test_fd_divided_by_n_is_the_biased_covariance_fd_and_meets_the_stylegan_v_card():
    """fd_ddof=0 gives the FD of covariances divided by N (StyleGAN-V's and cd-FVD's FVD); the stylegan-v card
    sets it, so its verdict no longer names the normaliser, and an explicit fd_ddof=1 is named."""
    spec = get_spec("i3d")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 6)), rng.normal(size=(25, 6)) * 1.3 + 0.2

    def stats(f, source):
        p = dataclasses.replace(spec.provenance(spec.weights.sha256, "logits", "tf", source=source),
                                clip="16 frames, stride 1, from frame 0")
        return Reference({"i3d/logits": FeatureStats.from_moments(f.mean(0), np.cov(f, rowvar=False), n=len(f),
                                                                  provenance=p)}, {}, source)

    plain = fidkit.evaluate(stats(x, "real"), stats(y, "fake"), metrics="fvd")
    biased = fidkit.evaluate(stats(x, "real"), stats(y, "fake"), metrics="fvd", fd_ddof=0)
    assert plain["fvd"] == pytest.approx(_scipy_fd(x, y, 1), rel=1e-9)
    assert biased["fvd"] == pytest.approx(_scipy_fd(x, y, 0), rel=1e-9)
    assert biased["fvd_mean_term"] + biased["fvd_cov_term"] == pytest.approx(biased["fvd"], rel=1e-12)
    card = fidkit.evaluate(stats(x, "real"), stats(y, "fake"), protocol="stylegan-v")
    assert card["fvd"] == biased["fvd"] and card.options["fd_ddof"] == 0
    assert not any(d.startswith("normaliser") for d in card.verdict.deviations), card.verdict.deviations
    named = fidkit.evaluate(stats(x, "real"), stats(y, "fake"), protocol="stylegan-v", fd_ddof=1)
    assert any(d.startswith("normaliser: covariances divided by N - 1") for d in named.verdict.deviations)
    kept = stats(y, "fake")
    kept.features["i3d/logits"] = y.astype(np.float32)   # what a bootstrap resamples
    with pytest.raises(BadInputError, match="bootstrap"):
        fidkit.evaluate(stats(x, "real"), kept, metrics="fvd", fd_ddof=0, bootstrap=10)
