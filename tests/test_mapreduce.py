"""Partial statistics of shards and their merge (fidkit.mapreduce, 'fidkit stats --partial', 'fidkit merge').

Exactness is checked against a NumPy computation over the kept per-sample features (an independent mean and
covariance) and against one pass over all images; images go through the network one at a time (batch_size=1)
so that a shard's features are bit-identical to the same images' features in the one pass.
"""

from __future__ import annotations

import io
import itertools
import random
import tarfile

import numpy as np
import pytest

import fidkit
from fidkit.cli import main
from fidkit.errors import BadInputError, IncomparableStatsError
from fidkit.mapreduce import Partial, combine, merge, partial
from fidkit.testing import tiny_extractor

from helpers import smooth_images, write_folder

SIZES = [1, 2, 3, 5, 8, 13, 4]          # 7 uneven shards, one of a single image
SPACE = "tiny/embedding"
OPTS = dict(features="tiny", keep_features=True, batch_size=1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    tiny_extractor()
    root = tmp_path_factory.mktemp("shards")
    images = smooth_images(sum(SIZES), 20, seed=3)
    write_folder(root / "all", images)
    paths, lo = [], 0
    for i, n in enumerate(SIZES):
        d = root / f"shard-{i:02d}"
        d.mkdir()
        for j in range(lo, lo + n):  # the one pass's file names, so a folder sorts as the shards concatenated
            (d / f"{j:04d}.png").write_bytes((root / "all" / f"{j:04d}.png").read_bytes())
        paths.append(str(d))
        lo += n
    parts = [partial(p, **OPTS) for p in paths]
    one = fidkit.compute_reference(str(root / "all"), **OPTS)
    fake = smooth_images(30, 20, seed=4)
    return root, paths, parts, one, fake


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-12) -> None:
    scale = max(float(np.abs(b).max()), 1e-300)
    assert float(np.abs(a - b).max()) <= rel * scale


def test_merge_in_any_order_and_any_tree_equals_one_pass(shards):
    _, _, parts, one, _ = shards
    feats = one.features[SPACE].astype(np.float64)
    mean, cov = feats.mean(0), np.cov(feats, rowvar=False)     # the independent reference: NumPy over all rows
    rng = random.Random(0)
    orders = [parts, parts[::-1]] + [rng.sample(parts, len(parts)) for _ in range(3)]
    trees = [combine([combine(parts[:3]), combine(parts[3:5]), combine(parts[5:])]),     # a tree
             combine([combine([parts[6], parts[0]]), combine([combine(parts[1:4]), combine(parts[4:6])])])]
    results = [merge(o) for o in orders] + [t.to_reference() for t in trees]
    chain = parts[0]
    for p in parts[1:]:  # a chain, two at a time
        chain = combine([chain, p])
    results.append(chain.to_reference())
    for ref in results:
        s = ref.stats[SPACE]
        assert s.n == sum(SIZES)
        _close(s.mean, mean)
        _close(s.cov, cov)
        _close(s.mean, one.stats[SPACE].mean)
        _close(s.cov, one.stats[SPACE].cov)
        # kept rows in shard order whatever the merge order: bit-identical to the one pass
        assert np.array_equal(ref.features[SPACE], one.features[SPACE])


def test_kid_and_precision_recall_from_merged_features_equal_one_pass(shards):
    _, _, parts, one, fake = shards
    kw = dict(metrics="fd,kd,pr", features="tiny", kid_subset_size=10, pr_k=3, batch_size=1)
    merged = fidkit.evaluate(merge(parts[::-1]), fake, **kw)
    single = fidkit.evaluate(one, fake, **kw)
    for key in ("kd_tiny", "precision_tiny", "recall_tiny"):
        assert merged[key] == single[key], key
    assert merged["fd_tiny"] == pytest.approx(single["fd_tiny"], rel=1e-9)


def test_partial_builder_on_decoded_batches_equals_the_file_shard(shards):
    root, paths, parts, _, _ = shards
    builder = fidkit.PartialBuilder(features="tiny", keep_features=True, batch_size=1)
    from PIL import Image
    images = np.stack([np.asarray(Image.open(f)) for f in sorted((root / "shard-05").iterdir())])
    builder.update(images[:6])
    builder.update(images[6:])
    got = builder.take("shard-05")
    assert builder.n == 0 and got.n == SIZES[5]
    assert np.array_equal(got.features[SPACE], parts[5].features[SPACE])
    _close(got.stats[SPACE].m2, parts[5].stats[SPACE].m2)
    back = Partial.from_bytes(got.to_bytes())       # what an engine ships between workers
    assert back.identity() == parts[5].identity() and back.shards == got.shards
    # features -> partial (Spark's path) gives the same statistics
    f = builder.features(images)
    again = builder.from_features(f, "shard-05")
    _close(again.stats[SPACE].mean, parts[5].stats[SPACE].mean)


def test_refuses_a_shard_twice_a_copy_of_its_content_and_other_settings(shards, tmp_path):
    root, paths, parts, _, _ = shards
    with pytest.raises(BadInputError, match="shard-02"):
        merge([parts[2], parts[3], partial(paths[2], **OPTS)])
    copy = tmp_path / "renamed"
    copy.mkdir()
    for f in (root / "shard-03").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    with pytest.raises(BadInputError, match="same content.*renamed|renamed.*same content"):
        merge([parts[3], partial(str(copy), **OPTS)])
    other_mode = Partial(parts[1].shards, {k: fidkit.FeatureStats(s.n, s.mean, s.m2, p)
                                           for k, s in parts[1].stats.items()
                                           for p in [s.provenance.__class__(**{**s.provenance.to_dict(),
                                                                                 "mode": "other"})]},
                         parts[1].features, {SPACE: parts[1].stats[SPACE].provenance.__class__(
                             **{**parts[1].provenance[SPACE].to_dict(), "mode": "other"})}, "other-mode.npz")
    with pytest.raises(IncomparableStatsError, match="other-mode.npz.*mode: 'custom' vs 'other'"):
        merge([parts[0], other_mode])
    tiny_extractor("tiny-b", seed=1)
    other_net = partial(paths[1], features="tiny-b", keep_features=True, batch_size=1)
    with pytest.raises(IncomparableStatsError, match="tiny/embedding: only in"):
        merge([parts[0], other_net])
    no_features = partial(paths[1], features="tiny", batch_size=1)
    with pytest.raises(IncomparableStatsError, match="keep"):
        merge([parts[0], no_features])


def test_expected_shards_missing_or_unexpected_are_named(shards):
    _, paths, parts, _, _ = shards
    with pytest.raises(BadInputError, match=r"1 of 7 expected shards have no partial: .*shard-04"):
        merge(parts[:4] + parts[5:], expect=paths)
    with pytest.raises(BadInputError, match="not in the list: .*shard-06"):
        merge(parts, expect=paths[:6])
    with pytest.raises(BadInputError, match="expected 8 shards, the partials hold 7"):
        merge(parts, expect_count=8)
    # the declared order is the order of kept rows
    ref = merge(parts, expect=paths[::-1])
    assert np.array_equal(ref.features[SPACE][:SIZES[-1]], parts[-1].features[SPACE])


def test_cli_partial_is_idempotent_refuses_changes_and_merges(shards, tmp_path, capsys):
    root, paths, parts, one, _ = shards
    out = [tmp_path / f"part-{i:05d}.npz" for i in range(len(paths))]
    for p, o in zip(paths, out):
        assert main(["stats", p, "--partial", "-o", str(o), "--features", "tiny", "--keep-features",
                     "--batch-size", "1", "--quiet"]) == 0
    before = out[0].stat().st_mtime_ns
    assert main(["stats", paths[0], "--partial", "-o", str(out[0]), "--features", "tiny", "--keep-features",
                 "--batch-size", "1"]) == 0
    assert "skipped" in capsys.readouterr().out and out[0].stat().st_mtime_ns == before
    # another shard, other settings: refused unless --restart
    assert main(["stats", paths[1], "--partial", "-o", str(out[0]), "--features", "tiny", "--keep-features"]) == 2
    assert "holds" in capsys.readouterr().err
    assert main(["stats", paths[0], "--partial", "-o", str(out[0]), "--features", "tiny"]) == 2
    assert "other settings" in capsys.readouterr().err
    listing = tmp_path / "shards.txt"
    listing.write_text("\n".join(paths) + "\n")
    assert main(["merge", str(tmp_path / "part-*.npz"), "-o", str(tmp_path / "ref.npz"),
                 "--expect", str(listing)]) == 0
    ref = fidkit.Reference.load(tmp_path / "ref.npz")
    _close(ref.stats[SPACE].cov, one.stats[SPACE].cov, 1e-12)
    assert np.array_equal(ref.features[SPACE], one.features[SPACE])
    listing.write_text("\n".join(paths + [str(root / "shard-99")]) + "\n")
    assert main(["merge", str(tmp_path / "part-*.npz"), "-o", str(tmp_path / "ref2.npz"),
                 "--expect", str(listing)]) == 2
    assert "shard-99" in capsys.readouterr().err and not (tmp_path / "ref2.npz").exists()
    # a side given as partials: a quoted pattern or @LIST
    parts_list = tmp_path / "parts.txt"
    parts_list.write_text("\n".join(o.name for o in out) + "\n")   # relative to the list's folder
    fake = str(root / "shard-05")
    for side in (str(tmp_path / "part-*.npz"), f"@{parts_list}"):
        assert main(["eval", side, fake, "--features", "tiny", "--metrics", "fd", "--batch-size", "1",
                     "--json", "--quiet"]) == 0
    import json
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["fd_tiny"] == lines[1]["fd_tiny"]
    direct = fidkit.evaluate(one, fake, metrics="fd", features="tiny", batch_size=1)
    assert lines[0]["fd_tiny"] == pytest.approx(direct["fd_tiny"], rel=1e-9)
    parts_list.write_text("part-00000.npz\nmissing.npz\n")
    assert main(["eval", f"@{parts_list}", fake, "--features", "tiny", "--metrics", "fd"]) == 2
    assert "missing.npz" in capsys.readouterr().err


def test_a_shard_failing_mid_read_writes_nothing_and_is_named(shards, tmp_path, capsys):
    root, _, _, _, _ = shards
    tar = tmp_path / "bad-shard.tar"
    with tarfile.open(tar, "w") as t:
        for name in ("0000.png", "0001.png"):
            t.add(root / "all" / name, arcname=name)
        data = (root / "all" / "0002.png").read_bytes()[:60]      # a truncated image in the middle
        info = tarfile.TarInfo("0002.png")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
        t.add(root / "all" / "0003.png", arcname="0003.png")
    out = tmp_path / "part-bad.npz"
    assert main(["stats", str(tar), "--partial", "-o", str(out), "--features", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "bad-shard.tar" in err and "0002.png" in err and "no partial written" in err
    assert list(tmp_path.iterdir()) == [tar]         # nothing written, no temporary file left


def test_a_damaged_partial_is_refused(shards, tmp_path):
    _, _, parts, _, _ = shards
    path = parts[4].save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = dict(z)
    arrays[f"{SPACE}/n"] = np.array(9, dtype=np.int64)
    np.savez(path, **arrays)
    with pytest.raises(BadInputError, match="p.npz.*n = 9"):
        Partial.load(path)
    stats_file = fidkit.Reference(parts[5].to_reference().stats).save(tmp_path / "ref.npz")
    with pytest.raises(BadInputError, match="ref.npz: not a fidkit partial"):
        merge([parts[0], str(stats_file)])


def test_url_shards_give_the_partials_of_the_same_images_on_disk(tmp_path):
    """Shards served over HTTP (WebDataset tars, read by URL through fsspec) make the same partials as the same
    images in local folders, each recording the URL and the server's content identity; the merge equals one pass."""
    pytest.importorskip("fsspec")
    from fidkit.data.shards import fingerprint as shard_fingerprint
    from shard_servers import http_server, png, webdataset_tar
    tiny_extractor()
    images = smooth_images(9, 20, seed=8)
    with http_server() as (base, files):
        urls, folders = [], []
        for s, (lo, hi) in enumerate(((0, 4), (4, 9))):
            files.files[f"/shard-{s}.tar"] = webdataset_tar([(f"{i:04d}", {"png": png(images[i])})
                                                             for i in range(lo, hi)])
            urls.append(f"{base}/shard-{s}.tar")
            folders.append(write_folder(tmp_path / f"shard-{s}", images[lo:hi]))
        remote = [partial(u, **OPTS) for u in urls]
        assert [p.shards[0].shard for p in remote] == urls
        assert [p.shards[0].fingerprint for p in remote] == [shard_fingerprint(u) for u in urls]
    local = [partial(str(f), **OPTS) for f in folders]
    for r, loc in zip(remote, local):
        assert r.n == loc.n and np.array_equal(r.features[SPACE], loc.features[SPACE])
    merged, one = merge(remote), fidkit.compute_reference(images, **OPTS)
    _close(merged.stats[SPACE].cov, one.stats[SPACE].cov)
    assert np.array_equal(merged.features[SPACE], one.features[SPACE])
