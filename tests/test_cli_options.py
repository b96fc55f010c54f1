"""Options (issue 16): each bad value is refused with the option named before any image is decoded, and
``--weights`` reads an existing path as a path."""

import argparse

import pytest

import fidkit
import fidkit.cli as cli
import fidkit.session as evaluation
from fidkit.cli import main
from fidkit.errors import BadInputError


@pytest.fixture
def no_extraction(monkeypatch):
    def refuse(*a, **k):
        pytest.fail("the extraction started before the options were checked")
    monkeypatch.setattr(evaluation.Session, "side", refuse)


@pytest.mark.parametrize("argv, words", [
    (["--seed", str(2**32)], ["seed", "at most 4294967295"]),
    (["--seed", str(2**64 + 5)], ["seed"]),
    (["--seed", str(10**30)], ["seed"]),
    (["--device", "meta"], ["'meta'", "no data"]),
    (["--device", "meta:0"], ["'meta:0'", "no data"]),
    (["--device", "nonsense"], ["'nonsense'", "not a torch device"]),
    (["--device", "cuda:999"], ["'cuda:999'"]),
    (["--metrics", "pr", "--pr-k", "10"], ["pr_k=10", "needs at least 11", "REAL"]),
    (["--metrics", "dc", "--dc-k", "10"], ["dc_k=10", "needs at least 11", "REAL"]),
    (["--metrics", "is", "--is-splits", "13"], ["is_splits=13", "FAKE", "holds 12"]),
    (["--metrics", "prdc", "--limit", "3"], ["holds 3", "needs at least"]),
])
def test_bad_options_are_named_before_the_extraction(folders, weights, capsys, no_extraction, argv, words):
    a, b = folders  # 10 and 12 images
    assert main(["eval", str(a), str(b), "--weights", weights, "--device", "cpu", "--quiet"] + argv) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_the_largest_seed_is_accepted():
    opts = fidkit.MetricOptions(seed=2**32 - 1)
    assert opts.seed == 2**32 - 1
    with pytest.raises(BadInputError, match="seed must be an integer of at most 4294967295"):
        fidkit.MetricOptions(seed=2**32)


def test_the_api_names_a_bad_device_before_the_work(folders, weights, no_extraction):
    a, b = folders
    for device in ("meta", "meta:1"):
        with pytest.raises(BadInputError, match="no data"):
            fidkit.evaluate(a, b, metrics="fid", weights=weights, device=device)
        with pytest.raises(BadInputError, match="no data"):
            fidkit.compute_reference(a, weights=weights, device=device)


def test_enough_samples_pass_the_count_check(folders, weights):
    a, b = folders
    r = fidkit.evaluate(a, b, metrics="pr,is", weights=weights, device="cpu", pr_k=9, is_splits=12)
    assert {"precision", "recall", "is"} <= set(r.values)


def test_weights_existing_path_wins_over_ext_equals_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("inception=v3.pth", "a=b", "dinov2=x,clip=y.pth", "w,1=2.pth"):
        (tmp_path / name).write_bytes(b"")
        assert cli._weights(name) == name  # relative
        assert cli._weights(str(tmp_path / name)) == str(tmp_path / name)  # absolute
    # names that do not exist are EXT=PATH pairs, split at the first '=' of each pair
    assert cli._weights("inception=/nowhere/a=b.pth") == {"inception": "/nowhere/a=b.pth"}
    assert cli._weights("inception=/x.pth,dinov2=/y=1.pth") == {"inception": "/x.pth", "dinov2": "/y=1.pth"}
    assert cli._weights("/plain/path.pth") == "/plain/path.pth"
    # a path with ',' inside a pair: the piece without '=' continues the path
    assert cli._weights("dinov2=/d/a,b.pth") == {"dinov2": "/d/a,b.pth"}
    for bad in ("=x.pth", "inception=", "x,inception=y"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._weights(bad)


@pytest.mark.parametrize("text", ["0,7", "0,2", "-1,0", "1,0"])
def test_an_unknown_value_range_is_refused_by_the_parser(folders, capsys, no_extraction, text):
    a, b = folders
    with pytest.raises(SystemExit) as e:
        main(["fid", str(a), str(b), f"--value-range={text}"])
    assert e.value.code == 2 and "--value-range" in capsys.readouterr().err
    for good in ("0,1", "-1,1", "0,255"):
        assert cli._value_range(good) in {(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)}
