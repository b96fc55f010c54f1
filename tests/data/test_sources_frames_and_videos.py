"""Animated images are named (only their first frame is read), video folders take every container PyAV reads and
name what they leave out, and clips are held to the pixel limit of one image, checked before decoding."""

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

import fidkit.data.video as video
from fidkit.data.sources import open_source
from fidkit.data.video import VIDEO_SUFFIXES, ClipOptions, open_video_source
from fidkit.engine.extract import MAX_NOTES, Diagnostics
from fidkit.errors import BadInputError

from conftest import smooth_images

needs_av = pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV (fidkit[video]) is not installed")


def _frames(n, h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# --- animated images ----------------------------------------------------------------------

def _save_animation(path, frames, fmt):
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, format=fmt, save_all=True, append_images=ims[1:], **({"duration": 100} if fmt != "TIFF" else {}))


@pytest.mark.parametrize("fmt,suffix", [("GIF", ".gif"), ("PNG", ".png"), ("WEBP", ".webp"), ("TIFF", ".tiff")])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_multi_frame_images_say_how_many_frames_were_left(tmp_path, fmt, suffix, frames):
    root = tmp_path / "imgs"
    root.mkdir()
    _save_animation(root / f"anim{suffix}", _frames(frames, 16, 16), fmt)
    (_, loader), = open_source(root).items()
    img, tags = loader()
    assert img.shape == (16, 16, 3)
    notes = [t for t in tags if t.startswith("note:")]
    if frames == 1:
        assert "animated" not in tags and notes == []
    else:
        assert "animated" in tags and notes == [f"note:holds more than one frame; only the first of {frames} frames "
                                                "was used"]


def test_each_animated_file_is_named_in_the_warnings_up_to_a_cap():
    d = Diagnostics("root")
    for i in range(MAX_NOTES + 3):
        d.add(f"root/{i}.gif", {"palette", "animated", f"note:holds more than one frame; only the first of {i + 2} "
                                                       "frames was used"})
    d.add("root/still.png", set())
    messages = d.messages(MAX_NOTES + 4)
    assert "root/0.gif: holds more than one frame; only the first of 2 frames was used" in messages
    assert f"root/{MAX_NOTES - 1}.gif: holds more than one frame; only the first of {MAX_NOTES + 1} frames was used" \
        in messages
    assert not any(m.startswith(f"root/{MAX_NOTES}.gif") for m in messages)
    assert "3 more notes like these about single images of root are not shown" in messages
    assert any(m.startswith(f"{MAX_NOTES + 3} of {MAX_NOTES + 4} images in root hold more than one frame")
               for m in messages)
    restored = Diagnostics("root")  # a resumed checkpoint keeps them
    restored.load_state(d.state())
    assert restored.messages(MAX_NOTES + 4) == messages


def test_an_animated_gif_is_named_in_the_result(tmp_path, weights):
    import fidkit
    root = tmp_path / "imgs"
    root.mkdir()
    for i, im in enumerate(smooth_images(2, 16, seed=1)):
        Image.fromarray(im).save(root / f"{i}.png")
    _save_animation(root / "anim.gif", _frames(3, 16, 16), "GIF")
    with pytest.warns(fidkit.FidkitWarning):
        result = fidkit.evaluate(root, root, metrics="fid", weights=weights, device="cpu")
    assert f"{root / 'anim.gif'}: holds more than one frame; only the first of 3 frames was used" in result.warnings


# --- video folders: every container, and what is left out named -------------------------------------

def _write_video(path, frames, codec, fmt=None, pix_fmt="yuv420p"):
    import av
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


CONTAINERS = [("a.m4v", "mpeg4", "mp4"), ("b.mpg", "mpeg1video", "mpeg"), ("c.ts", "mpeg2video", "mpegts"),
              ("d.flv", "flv", "flv"), ("e.mpeg", "mpeg2video", "vob"), ("f.3gp", "mpeg4", "3gp"),
              ("g.wmv", "wmv2", "asf"), ("h.mts", "mpeg2video", "mpegts"), ("i.mov", "mpeg4", "mov"),
              ("j.nut", "ffv1", "nut"), ("k.asf", "wmv1", "asf")]


@needs_av
@pytest.mark.parametrize("name,codec,fmt", CONTAINERS)
def test_containers_pyav_reads_are_videos(tmp_path, name, codec, fmt):
    assert os.path.splitext(name)[1] in VIDEO_SUFFIXES
    _write_video(tmp_path / "v" / name, _frames(6, 32, 32), codec, fmt)
    src = open_video_source(tmp_path / "v", clip=ClipOptions(length=4))
    (where, loader), = src.items()
    assert where == str(tmp_path / "v" / name)
    clip, _ = loader()
    assert clip.shape == (4, 32, 32, 3)
    assert src.notes == []


@needs_av
def test_files_left_out_of_a_video_folder_are_named_once(tmp_path):
    _write_video(tmp_path / "v" / "a.m4v", _frames(4, 32, 32), "mpeg4", "mp4")
    _write_video(tmp_path / "v" / "sub" / "b.mp4", _frames(4, 32, 32), "mpeg4", "mp4")
    for name in ["notes.txt", "sub/labels.json", "c.xyz"] + [f"extra/{i:02d}.srt" for i in range(12)]:
        (tmp_path / "v" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "v" / name).write_text("not a video")
    src = open_video_source(tmp_path / "v", clip=ClipOptions(length=2))
    assert [w for w, _ in src.items()] == [str(tmp_path / "v" / "a.m4v"), str(tmp_path / "v" / "sub" / "b.mp4")]
    note, = src.notes
    assert note.startswith(f"{tmp_path / 'v'}: 15 files are neither a video nor a frame and were left out: c.xyz, "
                           "extra/00.srt, ")
    assert "extra/08.srt and 5 more (videos: " in note and "sub/labels.json" not in note  # ten names shown


def test_files_left_out_of_frame_folders_are_named(tmp_path):
    for i, f in enumerate(_frames(2)):
        (tmp_path / "v" / "clip").mkdir(parents=True, exist_ok=True)
        Image.fromarray(f).save(tmp_path / "v" / "clip" / f"{i}.png")
    (tmp_path / "v" / "clip" / "meta.json").write_text("{}")
    src = open_video_source(tmp_path / "v", clip=ClipOptions(length=2))
    assert src.notes == [n for n in src.notes if "1 file is neither a video nor a frame and was left out: "
                         "clip/meta.json" in n] and len(src.notes) == 1


def test_left_out_files_reach_the_result(tmp_path, i3d_weights):
    import fidkit
    for v in range(2):
        for i, f in enumerate(_frames(16, 16, 16, seed=v)):
            (tmp_path / "v" / f"clip{v}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(f).save(tmp_path / "v" / f"clip{v}" / f"{i}.png")
    (tmp_path / "v" / "README").write_text("x")
    with pytest.warns(fidkit.FidkitWarning):
        result = fidkit.evaluate(tmp_path / "v", tmp_path / "v", metrics="fvd", weights=i3d_weights, device="cpu")
    assert any("1 file is neither a video nor a frame and was left out: README" in w for w in result.warnings)


# --- pixel limits on clips, before decoding ----------------------------------------------------

@needs_av
def test_a_video_clip_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    _write_video(tmp_path / "v" / "big.mp4", _frames(8, 32, 48), "mpeg4", "mp4")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 48 * 3)  # a 4-frame clip holds twice that and more
    monkeypatch.setattr(video, "_frame_rgb", lambda *a: pytest.fail("a frame was decoded"))
    (_, loader), = open_video_source(tmp_path / "v", clip=ClipOptions(length=8)).items()
    with pytest.raises(BadInputError, match=r"big\.mp4: refused, its clip of 8 frames of 48 x 32 pixels holds "
                                            r"12,288 pixels, more than the 9,216"):
        loader()


@needs_av
def test_a_video_clip_above_the_warning_limit_is_tagged_huge(tmp_path, monkeypatch):
    _write_video(tmp_path / "v" / "big.mp4", _frames(4, 32, 48), "mpeg4", "mp4")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 48 * 3)
    (_, loader), = open_video_source(tmp_path / "v", clip=ClipOptions(length=4)).items()
    clip, tags = loader()
    assert clip.shape == (4, 32, 48, 3) and "huge" in tags


def test_a_frame_folder_clip_above_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    for i, f in enumerate(_frames(6, 40, 40)):
        (tmp_path / "v" / "clip").mkdir(parents=True, exist_ok=True)
        Image.fromarray(f).save(tmp_path / "v" / "clip" / f"{i}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40 * 3 // 2)  # each frame is within it; four are not
    monkeypatch.setattr(video, "_decode_file", lambda *a: pytest.fail("a frame was decoded"))
    (_, loader), = open_video_source(tmp_path / "v", clip=ClipOptions(length=4)).items()
    with pytest.raises(BadInputError, match=r"clip/0\.png: refused, its clip of 4 frames of 40 x 40 pixels"):
        loader()


def test_running_out_of_memory_while_decoding_frames_is_named(tmp_path, monkeypatch):
    for i, f in enumerate(_frames(2, 8, 8)):
        (tmp_path / "v" / "clip").mkdir(parents=True, exist_ok=True)
        Image.fromarray(f).save(tmp_path / "v" / "clip" / f"{i}.png")

    def no_memory(p):
        raise MemoryError
    monkeypatch.setattr(video, "_decode_file", no_memory)
    (_, loader), = open_video_source(tmp_path / "v", clip=ClipOptions(length=2)).items()
    with pytest.raises(BadInputError, match=r"clip: out of memory while decoding its clip of 2 frames"):
        loader()


def test_running_out_of_memory_while_decoding_an_image_is_named(tmp_path, monkeypatch):
    import fidkit.data.images as images
    Image.fromarray(_frames(1, 8, 8)[0]).save(tmp_path / "a.png")

    def no_memory(im, name):
        raise MemoryError
    monkeypatch.setattr(images, "to_rgb_uint8", no_memory)
    (_, loader), = open_source(tmp_path).items()
    with pytest.raises(BadInputError, match=r"a\.png: out of memory while decoding it"):
        loader()
