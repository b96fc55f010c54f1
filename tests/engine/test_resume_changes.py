"""A resume whose inputs changed since the interruption is refused, naming what changed; a damaged or edited
checkpoint is refused, naming the checkpoint.  The network is replaced by a cheap deterministic function of the
pixels (the resume logic does not depend on which network runs), so many variants run in seconds."""

import os
import random
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import fidkit
from fidkit.errors import BadInputError
from fidkit.extractors.runtime import Extractor

from conftest import smooth_images

BATCH = 2
DONE_BATCHES = 2                       # the interrupted run counted 4 images
COUNTED = BATCH * DONE_BATCHES


def _features(self, batch, taps=None):
    # 3 x 27 x 27 = 2187 pooled pixel values, the first 2048: the width of pool3, different for different images.
    f = F.adaptive_avg_pool2d(batch.float(), 27).flatten(1)[:, :2048]
    return {t: f for t in (taps or ("pool3",))}


@pytest.fixture
def cheap_network(monkeypatch):
    monkeypatch.setattr(Extractor, "__call__", _features)
    import fidkit.engine.progress as progress
    monkeypatch.setattr(progress.Checkpoint, "due", lambda self: True)


def _interrupted(source, ckpt, weights, monkeypatch):
    calls = {"n": 0}

    def flaky(self, batch, taps=None):
        calls["n"] += 1
        if calls["n"] > DONE_BATCHES:
            raise KeyboardInterrupt
        return _features(self, batch, taps)
    monkeypatch.setattr(Extractor, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        fidkit.compute_reference(source, checkpoint=ckpt, **_kw(weights))
    monkeypatch.setattr(Extractor, "__call__", _features)
    assert ckpt.exists()


def _kw(weights):
    return dict(spatial=False, weights=weights, device="cpu", batch_size=BATCH, workers=1)


def _save(path, img, fmt):
    Image.fromarray(img).save(path, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}))


def _folder(root, n=10, seed=0):
    root.mkdir()
    imgs = smooth_images(n, 16, seed=seed)
    for i, img in enumerate(imgs):  # PNG and BMP (a BMP's size does not change with its content)
        fmt = "PNG" if i % 2 else "BMP"
        _save(root / f"{i:04d}.{fmt.lower()}", img, fmt)
    return root


def _listing(root):
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.iterdir(), key=lambda p: p.name)]


def _change(root, kind, rng):
    """Apply one change of ``kind``; return the names it involves (as they would appear in a message)."""
    files = sorted(root.iterdir())
    p = files[rng.randrange(len(files))]
    img = np.asarray(Image.open(p).convert("RGB"))
    st = p.stat()
    if kind == "content+mtime":  # other pixels, the same size when BMP; a new modification time
        _save(p, 255 - img, "BMP" if p.suffix == ".bmp" else "PNG")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_007))
        return [p.name]
    if kind == "size":  # the same pixels written with another PNG compression; the old modification time kept
        if p.suffix == ".bmp":
            p.write_bytes(p.read_bytes() + b"\0" * 16)  # trailing bytes a BMP reader ignores
        else:
            Image.fromarray(img).save(p, format="PNG", compress_level=9, optimize=True)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        if p.stat().st_size == st.st_size:
            p.write_bytes(p.read_bytes() + b"\0")
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        return [p.name]
    if kind == "added":
        name = f"{p.stem}a.png"
        _save(root / name, smooth_images(1, 16, seed=rng.randrange(1000))[0], "PNG")
        return [name]
    if kind == "removed":
        p.unlink()
        return [p.name]
    if kind == "renamed":
        new = root / f"{p.stem}-renamed{p.suffix}"
        p.rename(new)
        return [p.name, new.name]
    raise AssertionError(kind)


KINDS = ("content+mtime", "size", "added", "removed", "renamed")


def _assert_same(a, b):
    s, t = a.stats["inception/pool3"], b.stats["inception/pool3"]
    assert s.n == t.n
    np.testing.assert_array_equal(s.mean, t.mean)
    np.testing.assert_array_equal(s.cov, t.cov)


@pytest.mark.parametrize("seed", range(12))
def test_any_change_among_the_counted_images_refuses_the_resume(seed, tmp_path, weights, cheap_network,
                                                                 monkeypatch):
    rng = random.Random(seed)
    root = _folder(tmp_path / "imgs", seed=seed)
    ckpt = tmp_path / "ref.partial"
    _interrupted(root, ckpt, weights, monkeypatch)
    before = _listing(root)
    kinds = rng.sample(KINDS, rng.randint(1, 3))
    involved = [name for k in kinds for name in _change(root, k, rng)]
    after = _listing(root)
    # Independently of fidkit: did the first COUNTED files (name, size, mtime), those the checkpoint counted, change?
    touched = before[:COUNTED] != after[:COUNTED]
    if touched:
        with pytest.raises(BadInputError) as e:
            fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights))
        msg = str(e.value)
        assert str(ckpt) in msg and "--restart" in msg, msg
        counted_names = {n for n, *_ in before[:COUNTED]} | {n for n, *_ in after[:COUNTED]}
        named = [n for n in involved if n in counted_names]
        assert named and any(n in msg for n in named), (kinds, involved, msg)
    else:
        # Only images after the checkpoint's position changed: they are read now, so the resumed result is
        # exactly that of an uninterrupted run over the folder as it is.
        resumed = fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights))
        _assert_same(resumed, fidkit.compute_reference(root, **_kw(weights)))


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_change_to_a_counted_image_is_named(kind, tmp_path, weights, cheap_network, monkeypatch):
    root = _folder(tmp_path / "imgs")
    ckpt = tmp_path / "ref.partial"
    _interrupted(root, ckpt, weights, monkeypatch)

    class First(random.Random):  # always the second file: among the counted ones
        def randrange(self, n):
            return 1
    involved = _change(root, kind, First())
    with pytest.raises(BadInputError, match="changed since the checkpoint") as e:
        fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights))
    assert all(n in str(e.value) for n in involved), str(e.value)
    # --restart (here: the API's way, deleting the checkpoint) starts over with the new folder's result
    ckpt.unlink()
    _assert_same(fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights)),
                 fidkit.compute_reference(root, **_kw(weights)))


def _zip(path, imgs):
    with zipfile.ZipFile(path, "w") as z:
        for i, img in enumerate(imgs):
            tmp = path.parent / f"m{i:04d}.bmp"
            _save(tmp, img, "BMP")
            z.write(tmp, f"m{i:04d}.bmp")
            tmp.unlink()


def _tar(path, imgs, mtime):
    with tarfile.open(path, "w:gz") as t:
        for i, img in enumerate(imgs):
            tmp = path.parent / f"m{i:04d}.bmp"
            _save(tmp, img, "BMP")
            os.utime(tmp, (mtime[i], mtime[i]))
            t.add(tmp, f"m{i:04d}.bmp")
            tmp.unlink()


@pytest.mark.parametrize("kind", ["zip-member", "zip-touched", "tar-member"])
def test_a_changed_archive_refuses_the_resume(kind, tmp_path, weights, cheap_network, monkeypatch):
    imgs = smooth_images(8, 16, seed=3)
    mtimes = [1_600_000_000 + i for i in range(8)]
    path = tmp_path / ("a.zip" if kind.startswith("zip") else "a.tar.gz")
    (_zip(path, imgs) if kind.startswith("zip") else _tar(path, imgs, mtimes))
    ckpt = tmp_path / "ref.partial"
    _interrupted(path, ckpt, weights, monkeypatch)
    st = path.stat()
    changed = imgs.copy()
    changed[1] = 255 - changed[1]  # a counted member, the same size (BMP)
    if kind == "zip-member":
        _zip(path, changed)
    elif kind == "tar-member":
        _tar(path, changed, [m + (100 if i == 1 else 0) for i, m in enumerate(mtimes)])
    else:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # the same bytes, touched
    with pytest.raises(BadInputError, match="changed since the checkpoint") as e:
        fidkit.compute_reference(path, checkpoint=ckpt, **_kw(weights))
    msg = str(e.value)
    assert str(path) in msg and str(ckpt) in msg and "--restart" in msg
    if kind != "zip-touched":
        assert "m0001.bmp" in msg and "m0000.bmp" not in msg  # the member that changed, only it


def test_an_unchanged_input_still_resumes_to_the_uninterrupted_result(tmp_path, weights, cheap_network,
                                                                      monkeypatch):
    root = _folder(tmp_path / "imgs")
    ckpt = tmp_path / "ref.partial"
    _interrupted(root, ckpt, weights, monkeypatch)
    calls = {"n": 0}

    def counting(self, batch, taps=None):
        calls["n"] += 1
        return _features(self, batch, taps)
    monkeypatch.setattr(Extractor, "__call__", counting)
    resumed = fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights))
    assert calls["n"] == 5 - DONE_BATCHES
    monkeypatch.setattr(Extractor, "__call__", _features)
    _assert_same(resumed, fidkit.compute_reference(root, **_kw(weights)))


# -- a checkpoint that contradicts itself -----------------------------------------------------------------------

def _tamper_n(saved, k):
    saved["state"]["n"] += k
    for s in saved["state"]["stats"].values():
        s["n"] += k


def _tamper_all_counts(saved, k):  # n, statistics and indices agree with each other, not with the position
    _tamper_n(saved, k)
    idx = saved["state"]["indices"]
    saved["state"]["indices"] = torch.cat([idx, idx.max() + 1 + torch.arange(k)]) if k > 0 else idx[:k]


def _tamper_count(saved, k):
    saved["count"] += k


def _tamper_records(saved, k):
    saved["records"] = saved["records"][: len(saved["records"]) // 2]


def _tamper_indices(saved, k):
    saved["state"]["indices"] = saved["state"]["indices"].flip(0)


@pytest.mark.parametrize("tamper", [_tamper_n, _tamper_all_counts, _tamper_count, _tamper_records,
                                    _tamper_indices])
@pytest.mark.parametrize("k", [-1, 3])
def test_a_checkpoint_whose_counts_disagree_is_refused_naming_it(tamper, k, tmp_path, weights, cheap_network,
                                                                 monkeypatch):
    root = _folder(tmp_path / "imgs")
    ckpt = tmp_path / "ref.partial"
    _interrupted(root, ckpt, weights, monkeypatch)
    saved = torch.load(ckpt, weights_only=True)
    tamper(saved, k)
    torch.save(saved, ckpt)
    with pytest.raises(BadInputError) as e:
        fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights))
    assert str(ckpt) in str(e.value), str(e.value)


def test_an_old_names_only_checkpoint_is_not_resumed(tmp_path, weights, cheap_network, monkeypatch):
    root = _folder(tmp_path / "imgs")
    ckpt = tmp_path / "ref.partial"
    _interrupted(root, ckpt, weights, monkeypatch)
    saved = torch.load(ckpt, weights_only=True)
    saved["format"] = "fidkit-checkpoint-v1"
    torch.save(saved, ckpt)
    with pytest.raises(BadInputError, match="--restart") as e:
        fidkit.compute_reference(root, checkpoint=ckpt, **_kw(weights))
    assert str(ckpt) in str(e.value)
    shutil.rmtree(root)
