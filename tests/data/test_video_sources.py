"""Video sources: every way of pointing fidkit at videos gives the clip's exact frames, or an error naming the input."""

import dataclasses
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fidkit.data.video import ClipOptions, decode_video_file, natural_key, open_video_source, video_batch_to_uint8
from fidkit.errors import BadInputError

from helpers import smooth_images

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV (fidkit[video]) is not installed")


def _clips(source):
    return [loader() for _, loader in source.items()]


def noise_frames(n: int, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def write_video(path, frames: np.ndarray, codec: str, pix_fmt: str, *, options=None, container_options=None,
                fmt=None):
    """Encode ``T x H x W x 3`` RGB frames with PyAV."""
    import av
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=10, options=options or {})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder, frames: np.ndarray, name=lambda i: f"{i}.png", mode=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        im = Image.fromarray(f)
        (im if mode is None else im.convert(mode)).save(folder / name(i))
    return folder


# --- clip options -------------------------------------------------------------------

def test_clip_options_describe_and_select_frames():
    assert ClipOptions().describe() == "16 frames, stride 1, from frame 0"
    clip = ClipOptions(length=4, stride=3, start=2)
    assert clip.describe() == "4 frames, stride 3, from frame 2"
    assert list(clip.frame_indices) == [2, 5, 8, 11] and clip.frames_needed == 12
    with pytest.raises(dataclasses.FrozenInstanceError):
        clip.length = 3


@pytest.mark.parametrize("kwargs,label", [({"length": 0}, "clip length"), ({"stride": 0}, "frame stride"),
                                          ({"start": -1}, "clip start"), ({"length": 2.5}, "clip length"),
                                          ({"stride": True}, "frame stride")])
def test_clip_options_errors_name_the_option(kwargs, label):
    with pytest.raises(BadInputError, match=label):
        ClipOptions(**kwargs)


# --- video files --------------------------------------------------------------------

@needs_av
@pytest.mark.parametrize("name,codec,pix_fmt", [("a.mkv", "ffv1", "bgr0"), ("a.avi", "ffv1", "bgr0"),
                                                ("a.mov", "png", "rgb24")])
def test_lossless_video_files_give_the_exact_frames_of_the_clip(tmp_path, name, codec, pix_fmt):
    frames = noise_frames(10)
    write_video(tmp_path / "v" / name, frames, codec, pix_fmt)
    src = open_video_source(tmp_path / "v", clip=ClipOptions(length=3, stride=2, start=1))
    assert src.modality == "video" and src.count == 1 and src.batches is None
    (clip, tags), = _clips(src)
    assert clip.dtype == np.uint8 and clip.shape == (3, 24, 32, 3)
    np.testing.assert_array_equal(clip, frames[[1, 3, 5]])
    assert tags == {"nonsquare"}


@needs_av
def test_h264_mp4_with_reordered_frames_decodes_to_the_encoded_pixels(tmp_path):
    import av
    frames = smooth_images(12, 32, seed=3)
    # qp=0 is lossless on the YUV 4:2:0 planes, and x264's default preset uses B-frames, so decoding must reorder.
    path = write_video(tmp_path / "v" / "a.mp4", frames, "libx264", "yuv420p", options={"qp": "0"})
    # What the encoder stored: the RGB frames through PyAV's own conversion to 4:2:0 and back.
    stored = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
                       .to_ndarray(format="rgb24") for f in frames])
    clip, tags = decode_video_file(path, ClipOptions(length=4, stride=3, start=1))
    np.testing.assert_array_equal(clip, stored[[1, 4, 7, 10]])
    assert not tags
    # and each decoded frame is nearest to the original it should be (4:2:0 chroma blurs, never swaps, frames)
    distances = np.abs(clip[:, None].astype(int) - frames[None]).mean(axis=(2, 3, 4))
    assert distances.argmin(axis=1).tolist() == [1, 4, 7, 10]


@needs_av
def test_lossy_mp4_clip_takes_the_frames_start_and_stride_name(tmp_path):
    levels = 10 + 20 * np.arange(12)  # frame i is a flat grey of level 10 + 20 i: its index survives lossy coding
    frames = np.broadcast_to(levels[:, None, None, None], (12, 32, 32, 3)).astype(np.uint8)
    path = write_video(tmp_path / "a.mp4", frames, "mpeg4", "yuv420p")
    clip, _ = decode_video_file(path, ClipOptions(length=3, stride=3, start=2))
    assert clip.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(clip.reshape(3, -1).mean(axis=1), levels[[2, 5, 8]], atol=3)


@needs_av
def test_gif_frames_are_exact_and_opaque_gifs_are_not_tagged_alpha(tmp_path):
    palette = np.array([[0, 0, 0], [255, 255, 255], [200, 30, 40], [20, 180, 60], [30, 60, 220], [250, 200, 0]],
                       np.uint8)
    rng = np.random.default_rng(5)
    frames = palette[rng.integers(0, len(palette), (6, 20, 28))]  # few colours: GIF stores them exactly
    images = [Image.fromarray(f) for f in frames]
    (tmp_path / "v").mkdir()
    images[0].save(tmp_path / "v" / "a.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
    (clip, tags), = _clips(open_video_source(tmp_path / "v", clip=ClipOptions(length=3, stride=2, start=0)))
    np.testing.assert_array_equal(clip, frames[[0, 2, 4]])
    assert tags == {"nonsquare"}


def _concatenated_sizes_mkv(path, first: np.ndarray, second: np.ndarray):
    """An .mkv whose H.264 stream changes frame size after ``len(first)`` frames (a concatenation of two streams)."""
    import av
    parts = [write_video(path.parent / f"part{i}.h264", f, "libx264", "yuv420p", fmt="h264")
             for i, f in enumerate((first, second))]
    joined = path.parent / "joined.h264"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with av.open(str(joined)) as src, av.open(str(path), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(src.demux(src.streams.video[0])):
            if packet.size == 0:
                continue
            packet.stream, packet.pts, packet.dts, packet.time_base = out, i, i, out.time_base
            dst.mux(packet)
    for p in (*parts, joined):
        p.unlink()
    return path


@needs_av
def test_decoding_stops_after_the_last_needed_frame_and_size_changes_are_named(tmp_path):
    path = _concatenated_sizes_mkv(tmp_path / "v" / "resized.mkv", smooth_images(5, 32, seed=1),
                                   smooth_images(5, 16, seed=2))
    clip, _ = decode_video_file(path, ClipOptions(length=5))  # never reaches the resized frames
    assert clip.shape == (5, 32, 32, 3)
    with pytest.raises(BadInputError, match=r"resized\.mkv: frame 5 is 16 x 16 pixels, earlier frames 32 x 32"):
        _clips(open_video_source(path.parent, clip=ClipOptions(length=6)))


@needs_av
def test_a_too_short_video_names_the_file_its_frame_count_and_the_need(tmp_path):
    write_video(tmp_path / "v" / "short.mkv", noise_frames(10), "ffv1", "bgr0")
    src = open_video_source(tmp_path / "v", clip=ClipOptions())
    with pytest.raises(BadInputError, match=r"short\.mkv: 10 frames; the clip needs 16 \(16 frames, stride 1, "
                                            r"from frame 0\)"):
        _clips(src)
    with pytest.raises(BadInputError, match="10 frames; the clip needs 11"):
        _clips(open_video_source(tmp_path / "v", clip=ClipOptions(length=2, stride=2, start=8)))
    (clip, _), = _clips(open_video_source(tmp_path / "v", clip=ClipOptions(length=2, stride=2, start=7)))
    assert len(clip) == 2  # frames 7 and 9: exactly enough


@needs_av
def test_corrupt_and_truncated_files_are_named(tmp_path):
    good = write_video(tmp_path / "good.mp4", smooth_images(10, 32, seed=4), "mpeg4", "yuv420p")
    fast = write_video(tmp_path / "fast.mp4", smooth_images(10, 32, seed=4), "mpeg4", "yuv420p",
                       container_options={"movflags": "faststart"})  # index first: a cut file still opens
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cut.mp4").write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    (bad / "cut_fast.mp4").write_bytes(fast.read_bytes()[:fast.stat().st_size // 2])
    (bad / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (bad / "empty.webm").write_bytes(b"")
    src = open_video_source(bad, clip=ClipOptions(length=10))
    loaders = dict(src.items())
    assert len(loaders) == 4
    for name, loader in loaders.items():
        with pytest.raises(BadInputError, match=rf"{os.path.basename(name)}: ") as e:
            loader()
        assert str(bad) in str(e.value)


@needs_av
def test_a_file_without_a_video_stream_is_named(tmp_path):
    import av
    (tmp_path / "v").mkdir()
    with av.open(str(tmp_path / "v" / "sound.mkv"), "w") as c:
        stream = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    with pytest.raises(BadInputError, match=r"sound\.mkv: no video stream"):
        _clips(open_video_source(tmp_path / "v", clip=ClipOptions(length=1)))


def test_without_pyav_video_files_ask_for_the_extra(tmp_path, monkeypatch):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(BadInputError, match=r'needs PyAV.*pip install "fidkit\[video\]"'):
        open_video_source(tmp_path / "v", clip=ClipOptions())
    with pytest.raises(BadInputError, match=r'pip install "fidkit\[video\]"'):
        decode_video_file(tmp_path / "v" / "a.mp4", ClipOptions())
    # arrays and frame folders need no decoder
    assert open_video_source(torch.zeros(1, 16, 3, 4, 4, dtype=torch.uint8), clip=ClipOptions()).count == 1


# --- frame folders ------------------------------------------------------------------

def test_frame_folders_are_videos_in_natural_frame_order(tmp_path):
    a, b = noise_frames(12, seed=1), noise_frames(12, seed=2)
    write_frame_folder(tmp_path / "root" / "b", b)  # 0.png .. 11.png: "10.png" sorts before "2.png" as text
    write_frame_folder(tmp_path / "root" / "a" / "x", a, name=lambda i: f"frame{i}.png")
    src = open_video_source(tmp_path / "root", clip=ClipOptions(length=4, stride=3))
    assert src.count == 2 and src.modality == "video"
    names = [n for n, _ in src.items()]
    assert names == [str(tmp_path / "root" / "a" / "x"), str(tmp_path / "root" / "b")]
    (clip_a, tags_a), (clip_b, _) = _clips(src)
    np.testing.assert_array_equal(clip_a, a[[0, 3, 6, 9]])
    np.testing.assert_array_equal(clip_b, b[[0, 3, 6, 9]])
    assert tags_a == {"nonsquare"}


def test_natural_key_compares_digit_runs_as_numbers():
    names = ["f10.png", "f2.png", "f1.png", "g0.png", "f02.png", "10.png", "9.png"]
    assert sorted(names, key=natural_key) == ["9.png", "10.png", "f1.png", "f02.png", "f2.png", "f10.png", "g0.png"]


def test_frame_folder_conversion_tags_are_carried(tmp_path):
    frames = smooth_images(3, 16, seed=6)
    write_frame_folder(tmp_path / "root" / "grey", frames, mode="L")
    write_frame_folder(tmp_path / "root" / "jpeg", frames, name=lambda i: f"{i}.jpg")
    (grey, grey_tags), (_, jpeg_tags) = _clips(open_video_source(tmp_path / "root", clip=ClipOptions(length=3)))
    expected = np.stack([np.asarray(Image.fromarray(f).convert("L")) for f in frames])
    np.testing.assert_array_equal(grey, np.repeat(expected[..., None], 3, axis=3))
    assert grey_tags == {"gray"} and jpeg_tags == {"jpeg"}


def test_frame_folder_errors_name_the_folder_or_frame(tmp_path):
    write_frame_folder(tmp_path / "short" / "v", noise_frames(3))
    with pytest.raises(BadInputError, match=r"short/v: 3 frames; the clip needs 5 \(3 frames, stride 2"):
        _clips(open_video_source(tmp_path / "short", clip=ClipOptions(length=3, stride=2)))
    write_frame_folder(tmp_path / "sizes" / "v", noise_frames(3))
    Image.fromarray(noise_frames(1, 10, 10)[0]).save(tmp_path / "sizes" / "v" / "1.png")
    with pytest.raises(BadInputError, match=r"v/1\.png: 10 x 10 pixels, but earlier frames of this video are 32 x 24"):
        _clips(open_video_source(tmp_path / "sizes", clip=ClipOptions(length=3)))
    write_frame_folder(tmp_path / "broken" / "v", noise_frames(3))
    (tmp_path / "broken" / "v" / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(BadInputError, match=r"v/2\.png: cannot read image"):
        _clips(open_video_source(tmp_path / "broken", clip=ClipOptions(length=3)))


def test_mixed_and_empty_folders_are_refused_with_the_reason(tmp_path):
    frames = noise_frames(2)
    write_frame_folder(tmp_path / "mixed" / "frames", frames)
    (tmp_path / "mixed" / "clip.mp4").write_bytes(b"whatever")
    write_frame_folder(tmp_path / "loose" / "frames", frames)
    write_frame_folder(tmp_path / "loose", frames[:1], name=lambda i: "stray.png")
    write_frame_folder(tmp_path / "images", frames)
    write_frame_folder(tmp_path / "nested" / "v", frames)
    write_frame_folder(tmp_path / "nested" / "v" / "inner", frames)
    write_frame_folder(tmp_path / "gif" / "v", frames, name=lambda i: f"{i}.gif")  # GIFs are videos
    write_frame_folder(tmp_path / "gif" / "v", frames)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    cases = {"mixed": "holds both video files", "loose": "holds images directly .*stray.png.* next to frame folders",
             "images": r"holds images \(e.g. 0.png\), not videos", "nested": r"v: holds frames .*alone in a leaf",
             "gif": "holds both video files", "empty": "empty: no videos found"}
    for folder, message in cases.items():
        with pytest.raises(BadInputError, match=message):
            open_video_source(tmp_path / folder, clip=ClipOptions(length=1))


def test_video_folders_are_walked_like_image_folders(tmp_path):
    write_frame_folder(tmp_path / "outside" / "v", noise_frames(2, seed=1))
    write_frame_folder(tmp_path / "root" / "a", noise_frames(2, seed=2))
    os.symlink(tmp_path / "outside", tmp_path / "root" / "linked")
    src = open_video_source(tmp_path / "root", clip=ClipOptions(length=2))
    assert [n for n, _ in src.items()] == [str(tmp_path / "root" / "a"), str(tmp_path / "root" / "linked" / "v")]
    os.symlink(tmp_path / "root" / "a", tmp_path / "root" / "again")
    with pytest.raises(BadInputError, match="its videos would be counted twice"):
        open_video_source(tmp_path / "root", clip=ClipOptions(length=2))
    os.unlink(tmp_path / "root" / "again")
    os.symlink(tmp_path / "missing.mp4", tmp_path / "root" / "gone.mp4")
    with pytest.raises(BadInputError, match=r"gone\.mp4: broken symbolic link"):
        open_video_source(tmp_path / "root", clip=ClipOptions(length=2))


def test_limit_takes_the_first_videos_in_sorted_order(tmp_path):
    for i in range(3):
        write_frame_folder(tmp_path / f"v{i}", noise_frames(2, seed=i))
    src = open_video_source(tmp_path, clip=ClipOptions(length=2), limit=2)
    assert src.count == 2 and [n for n, _ in src.items()] == [str(tmp_path / "v0"), str(tmp_path / "v1")]
    with pytest.raises(BadInputError, match="limit must be at least 1"):
        open_video_source(tmp_path, clip=ClipOptions(), limit=0)


# --- arrays and tensors -------------------------------------------------------------

def test_npy_and_npz_arrays_are_read_in_chunks_of_whole_videos(tmp_path, monkeypatch):
    import fidkit.data.video as video
    videos = np.random.default_rng(7).integers(0, 256, (5, 7, 8, 10, 3), dtype=np.uint8)  # N x T x H x W x C
    np.save(tmp_path / "v.npy", videos)
    np.savez(tmp_path / "v.npz", arr_0=videos)
    np.savez_compressed(tmp_path / "c.npz", clips=videos)
    monkeypatch.setattr(video, "ARRAY_CHUNK_BYTES", 2 * videos[0].nbytes)  # two videos per chunk
    clip = ClipOptions(length=3, stride=2, start=1)
    for name in ("v.npy", "v.npz", "c.npz"):
        src = open_video_source(tmp_path / name, clip=clip)
        assert src.count == 5 and src.batches is None and src.modality == "video", name
        got = _clips(src)
        np.testing.assert_array_equal(np.stack([g for g, _ in got]), videos[:, 1:6:2], err_msg=name)
        assert all(tags == {"nonsquare"} for _, tags in got)
        limited = open_video_source(tmp_path / name, clip=clip, limit=3)
        assert limited.count == 3 and len(_clips(limited)) == 3


def test_grey_and_float_arrays_follow_the_image_rules(tmp_path):
    rng = np.random.default_rng(8)
    grey = rng.integers(0, 256, (2, 4, 6, 6, 1), dtype=np.uint8)
    np.save(tmp_path / "grey.npy", grey)
    got = _clips(open_video_source(tmp_path / "grey.npy", clip=ClipOptions(length=4)))
    np.testing.assert_array_equal(got[1][0], np.repeat(grey[1], 3, axis=3))
    assert got[1][1] == {"gray"}
    levels = rng.integers(0, 256, (2, 4, 16, 16, 3))
    floats = (levels / 255).astype(np.float32)
    np.save(tmp_path / "f.npy", floats)
    with pytest.raises(BadInputError, match="need a declared value range"):
        _clips(open_video_source(tmp_path / "f.npy", clip=ClipOptions(length=4)))
    got = _clips(open_video_source(tmp_path / "f.npy", clip=ClipOptions(length=4), value_range=(0, 1)))
    np.testing.assert_array_equal(np.stack([g for g, _ in got]), levels)
    pm1 = torch.from_numpy(levels / 127.5 - 1).permute(0, 1, 4, 2, 3)  # NTCHW, float64 in [-1, 1]
    (u8, tags, _), = open_video_source(pm1, clip=ClipOptions(length=4), value_range=(-1, 1)).batches()
    np.testing.assert_array_equal(u8.permute(0, 1, 3, 4, 2).numpy(), levels)
    assert not tags


def test_tensor_and_array_layouts_agree(tmp_path):
    v = torch.randint(0, 256, (3, 6, 3, 8, 10), dtype=torch.uint8)  # N x T x C x H x W
    expected = v[:, [1, 3]]
    clip = ClipOptions(length=2, stride=2, start=1)
    sources = [open_video_source(v, clip=clip),
               open_video_source(v.permute(0, 2, 1, 3, 4), clip=clip, layout="NCTHW"),
               open_video_source(v.permute(0, 1, 3, 4, 2).numpy(), clip=clip)]
    for src in sources:
        assert src.count == 3 and src.modality == "video"
        (u8, tags, name), = src.batches()
        assert u8.dtype == torch.uint8 and u8.shape == (3, 2, 3, 8, 10) and u8.device == v.device
        assert torch.equal(u8, expected) and tags == {"nonsquare"} and name.endswith("[0:3]")
        clips = _clips(src)
        np.testing.assert_array_equal(np.stack([c for c, _ in clips]), expected.permute(0, 1, 3, 4, 2).numpy())


def test_an_iterable_of_batches_respects_limit_across_batches():
    batches = [torch.full((3, 2, 3, 4, 4), i, dtype=torch.uint8) for i in range(3)]
    src = open_video_source(iter(batches), clip=ClipOptions(length=2), limit=4)
    assert src.count is None
    clips = _clips(src)
    assert len(clips) == 4 and [int(c[0, 0, 0, 0]) for c, _ in clips] == [0, 0, 0, 1]


@pytest.mark.parametrize("make,message", [
    (lambda: torch.zeros(2, 3, 8, 8, dtype=torch.uint8), r"is a batch of images; videos are N x T x C x H x W"),
    (lambda: torch.zeros(2, 3, 8, dtype=torch.uint8), r"videos are 5-D"),
    (lambda: torch.zeros(2, 3, 16, 8, 8, dtype=torch.uint8), r"16 channels .*\(it fits layout='NCTHW'\)"),
    (lambda: torch.zeros(2, 4, 3, 8, 8, dtype=torch.uint8), r"T = 4 frames per video .* the clip needs 16"),
    (lambda: np.zeros((2, 16, 0, 8, 3), np.uint8), r"have no pixels"),
])
def test_wrong_shapes_name_the_expected_layouts(make, message):
    with pytest.raises(BadInputError, match=message):
        open_video_source(make(), clip=ClipOptions())


def test_files_and_options_that_are_not_videos_are_refused(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3), sigma=np.eye(3))
    np.save(tmp_path / "short.npy", np.zeros((2, 4, 8, 8, 3), np.uint8))
    (tmp_path / "a.zip").write_bytes(b"PK")
    cases = {"images.npy": r"images\.npy: shape \(2, 8, 8, 3\) is a batch of images",
             "stats.npz": "holds statistics", "short.npy": r"short\.npy: T = 4 frames per video",
             "a.zip": "unsupported file type for videos", "missing": "missing: no such file or folder"}
    for name, message in cases.items():
        with pytest.raises(BadInputError, match=message):
            open_video_source(tmp_path / name, clip=ClipOptions())
    with pytest.raises(BadInputError, match=r"layout='NHWC': use one of NTCHW, NCTHW, NTHWC"):
        open_video_source(torch.zeros(1, 16, 3, 4, 4), clip=ClipOptions(), layout="NHWC")
    with pytest.raises(BadInputError, match="clip must be a ClipOptions"):
        open_video_source(torch.zeros(1, 16, 3, 4, 4), clip={"length": 4})


def test_video_batch_to_uint8_takes_the_clip_and_keeps_the_device():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    v = torch.arange(20, dtype=torch.uint8, device=device).reshape(1, 20, 1, 1, 1).expand(2, 20, 3, 4, 4)
    u8, tags = video_batch_to_uint8(v, "update", None, None, None)  # None: the default clip, 16 frames from 0
    assert u8.device == v.device and u8.shape == (2, 16, 3, 4, 4) and not tags
    assert u8[0, :, 0, 0, 0].tolist() == list(range(16))
    u8, _ = video_batch_to_uint8(v.permute(0, 2, 1, 3, 4), "update", None, "NCTHW", ClipOptions(3, 5, 4))
    assert u8[1, :, 2, 3, 3].tolist() == [4, 9, 14]
    with pytest.raises(BadInputError, match="update: batch of type list"):
        video_batch_to_uint8([1, 2], "update", None, None, None)
