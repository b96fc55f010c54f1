"""Video sources: clips of uint8 RGB frames from video files, frame folders, 5-D arrays and tensors.

A video network sees a *clip*: ``length`` frames taken every ``stride`` frames from frame ``start`` (counted from
0), as :class:`ClipOptions` says.  A video with too few frames for the clip is an error that names it, never a
shorter or padded clip.  Every loader returns a uint8 ``T x H x W x 3`` array (``T`` = the clip length) and its
conversion tags, like the image loaders of :mod:`fidkit.data.sources`.

Accepted inputs:

* a folder (searched recursively, sorted, following symbolic links) of video files, decoded with PyAV
  (``pip install "fidkit[video]"``): the container suffixes of :data:`VIDEO_SUFFIXES` (``.3g2 .3gp .asf .avi .dv
  .f4v .flv .gif .m2t .m2ts .m2v .m4v .mkv .mov .mp4 .mpeg .mpg .mts .mxf .nut .ogv .qt .ts .vob .webm .wmv
  .y4m``), every one a format FFmpeg demuxes; any other file in the folder is left out and named in a warning.
  Frames are counted in the order the decoder returns them (display order); frame rates and timestamps are ignored,
  so a GIF's frame delays do not repeat frames.  Decoding stops after the last frame the clip needs.  Frames are
  converted to RGB with PyAV's ``to_ndarray(format="rgb24")`` (FFmpeg's swscale); rotation metadata is not applied.
* a folder of *frame folders*: each leaf folder holding images is one video, its frames in natural order of
  their names (runs of digits compare as numbers, so ``2.png`` comes before ``10.png``; ties fall back to plain
  name order).  Frames are decoded like image files (:func:`fidkit.data.images.decode_image`).  ``.gif`` files
  always count as videos, never as frames.  A folder mixing video files with frames, or holding frames next to
  sub-folders of frames, is an error: which video a frame belongs to would be a guess.
* ``.npy`` / ``.npz`` files holding one 5-D array, ``N x T x H x W x C`` unless ``layout`` says otherwise,
  read in chunks of whole videos so that memory stays bounded.
* in memory: a ``torch.Tensor`` ``N x T x C x H x W`` (``layout="NCTHW"`` for ``N x C x T x H x W``), a
  ``numpy.ndarray`` ``N x T x H x W x C``, or an iterable of such batches.

A clip is held whole while decoded, so it may hold at most as many pixels as one image may (frames x width x
height at most twice ``PIL.Image.MAX_IMAGE_PIXELS``, PIL's decompression-bomb limit; above the limit itself it is
reported as huge); the size is read from the stream's (or the first frame's) header before any frame is decoded,
and a larger clip is an error naming the file.

Pixel values follow the image rules (:func:`fidkit.data.sources.to_uint8_nchw`): uint8 as is, other integers
within 0..255, floats only with a declared ``value_range``; one channel (grey) is repeated to three and four
(alpha) are cut to three, each tagged.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from PIL import Image

from fidkit.data.images import IMAGE_SUFFIXES
from fidkit.data.arrays import _NpzMember
from fidkit.data.files import _decode_file, _require_regular_file, walk_files
from fidkit.data.pixels import to_uint8_nchw
from fidkit.data.source import (NUMPY_FILE_ERRORS, SHOWN_NAMES, ImageSource, Loaded, _describe_array, check_path_text,
                                path_status, printable)
from fidkit.errors import BadInputError
from fidkit.stats.reference import Reference

#: Video files of a folder: container formats FFmpeg (PyAV) demuxes, by their usual suffixes (MPEG-4/QuickTime,
#: Matroska/WebM, AVI, MPEG program and transport streams, Flash, Windows Media, 3GPP, Ogg video, MXF, DV, NUT,
#: raw MPEG video, YUV4MPEG, GIF).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".f4v",
                            ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".m2t", ".m2ts", ".mts", ".vob",
                            ".flv", ".wmv", ".asf", ".ogv", ".mxf", ".dv", ".nut", ".y4m", ".gif"})
#: Image files that are frames of a frame-folder video (a GIF is a video of its own).
FRAME_SUFFIXES = IMAGE_SUFFIXES - VIDEO_SUFFIXES

#: Accepted array layouts, as the axis order that turns each into ``N x T x C x H x W``.
LAYOUTS = {"NTCHW": (0, 1, 2, 3, 4), "NCTHW": (0, 2, 1, 3, 4), "NTHWC": (0, 1, 4, 2, 3)}
_LAYOUT_SHAPES = {"NTCHW": "N x T x C x H x W", "NCTHW": "N x C x T x H x W", "NTHWC": "N x T x H x W x C"}

#: About how many bytes of a stored array are read and converted at once (whole videos, at least one).
ARRAY_CHUNK_BYTES = 64 << 20

INSTALL_HINT = 'pip install "fidkit[video]"'


@dataclasses.dataclass(frozen=True)
class ClipOptions:
    """Which frames of each video make its clip: ``start, start + stride, ..., start + (length - 1) * stride``."""

    length: int = 16
    stride: int = 1
    start: int = 0

    def __post_init__(self):
        for field, label, lowest in (("length", "clip length", 1), ("stride", "frame stride", 1),
                                     ("start", "clip start", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise BadInputError(f"{label} must be a whole number, got {value!r}")
            if value < lowest:
                raise BadInputError(f"{label} must be at least {lowest}, got {value}")
            object.__setattr__(self, field, int(value))

    @property
    def frames_needed(self) -> int:
        """How many frames a video must have for this clip."""
        return self.start + (self.length - 1) * self.stride + 1

    @property
    def frame_indices(self) -> range:
        return range(self.start, self.frames_needed, self.stride)

    def describe(self) -> str:
        """A stable one-line description, recorded in provenance."""
        return f"{self.length} frames, stride {self.stride}, from frame {self.start}"

    def _needs(self) -> str:
        return f"the clip needs {self.frames_needed} ({self.describe()})"


def open_video_source(spec, *, clip: ClipOptions, value_range=None, limit: int | None = None,
                      layout: str | None = None) -> ImageSource:
    """Videos from a folder, a ``.npy``/``.npz`` file, a tensor, an array or an iterable of batches (see the
    module's documentation); every loader returns a uint8 ``T x H x W x 3`` clip."""
    if not isinstance(clip, ClipOptions):
        raise BadInputError(f"clip must be a ClipOptions, got {type(clip).__name__}")
    if limit is not None and limit < 1:
        raise BadInputError(f"limit must be at least 1, got {limit}")
    _check_layout(layout)
    check_path_text(spec)
    if isinstance(spec, (str, os.PathLike)):
        return _open_path(Path(spec), clip, value_range, limit, layout)
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        where = _describe_array(spec)
        _check_shape(spec, where, _layout_of(spec, layout), clip)
        count = len(spec) if limit is None else min(limit, len(spec))
        return _array_videos([spec], where, clip, value_range, limit, layout, count=count, in_memory=True)
    if isinstance(spec, Iterable):
        return _array_videos(spec, "batches", clip, value_range, limit, layout, count=None, in_memory=True)
    raise BadInputError(f"cannot use {type(spec).__name__} as videos: pass a folder, a .npy/.npz file, a tensor "
                        "(N x T x C x H x W), an array (N x T x H x W x C) or an iterable of such batches")


def video_batch_to_uint8(batch, where: str, value_range, layout: str | None, clip: ClipOptions | None
                         ) -> tuple[torch.Tensor, frozenset]:
    """One batch of videos as a uint8 ``N x T x 3 x H x W`` tensor (on the batch's device) of its clips, and tags.

    ``layout`` defaults to ``NTCHW`` for tensors and ``NTHWC`` for numpy arrays; only the clip's frames are
    converted (a memory-mapped array reads no others).
    """
    clip = clip or ClipOptions()
    if not isinstance(batch, (torch.Tensor, np.ndarray)):
        raise BadInputError(f"{where}: batch of type {type(batch).__name__}; expected a tensor or an array of videos")
    _check_layout(layout)
    layout = _layout_of(batch, layout)
    _check_shape(batch, where, layout, clip)
    t_axis = layout.index("T")
    frames = batch[(slice(None),) * t_axis + (slice(clip.start, clip.frames_needed, clip.stride),)]
    if isinstance(frames, np.ndarray):
        if not frames.dtype.isnative:  # big-endian .npy files: torch reads native byte order only
            frames = frames.astype(frames.dtype.newbyteorder("="))
        frames = torch.from_numpy(np.require(frames, requirements="W"))  # read-only (memory-mapped) clips are copied
    x = frames.detach().permute(*LAYOUTS[layout])
    n, t, c, h, w = x.shape
    u8, tags = to_uint8_nchw(x.reshape(n * t, c, h, w), where, value_range, channels_last=False)
    return u8.reshape(n, t, 3, h, w), tags


# --- arrays and tensors -------------------------------------------------------------

def _check_layout(layout) -> None:
    if layout is not None and layout not in LAYOUTS:
        raise BadInputError(f"layout={layout!r}: use one of {', '.join(LAYOUTS)} "
                            "(N videos, T frames, C channels, H x W pixels)")


def _layout_of(batch, layout: str | None) -> str:
    return layout or ("NTCHW" if isinstance(batch, torch.Tensor) else "NTHWC")


def _check_shape(batch, where: str, layout: str, clip: ClipOptions) -> None:
    shape = tuple(batch.shape)
    expected = ("N x T x C x H x W tensors (N x C x T x H x W with layout='NCTHW') or N x T x H x W x C arrays")
    if len(shape) == 4:
        raise BadInputError(f"{where}: shape {shape} is a batch of images; videos are {expected} (one video needs a "
                            "leading batch axis: x[None])")
    if len(shape) != 5:
        raise BadInputError(f"{where}: shape {shape}; videos are 5-D: {expected}")
    if 0 in shape[1:]:
        raise BadInputError(f"{where}: videos of shape {shape} have no pixels")
    channels = shape[layout.index("C")]
    if channels not in (1, 3, 4):
        fits = [name for name in LAYOUTS if name != layout and shape[name.index("C")] in (1, 3, 4)]
        hint = f" (it fits layout={fits[0]!r})" if fits else ""
        raise BadInputError(f"{where}: {channels} channels in shape {shape} read as {_LAYOUT_SHAPES[layout]}; "
                            f"expected C = 1, 3 or 4{hint}")
    frames = shape[layout.index("T")]
    if frames < clip.frames_needed:
        raise BadInputError(f"{where}: T = {frames} frames per video in shape {shape} ({_LAYOUT_SHAPES[layout]}); "
                            f"{clip._needs()}")


def _array_videos(batches: Iterable, where: str, clip: ClipOptions, value_range, limit, layout, *,
                  count: int | None, in_memory: bool) -> ImageSource:
    def tensor_batches():
        index = 0
        for batch in batches:
            if limit is not None and index >= limit:
                return
            if limit is not None:
                batch = batch[:limit - index]
            u8, tags = video_batch_to_uint8(batch, f"{where}[{index}:]", value_range, layout, clip)
            yield u8, tags, f"{where}[{index}:{index + len(u8)}]"
            index += len(u8)

    def items():
        index = 0
        for u8, tags, _ in tensor_batches():
            for video in u8.cpu().permute(0, 1, 3, 4, 2).contiguous().numpy():
                yield f"{where}[{index}]", (lambda video=video, tags=tags: (video, tags))
                index += 1
    return ImageSource(where, count, items, tensor_batches if in_memory else None, modality="video")


def _array_file(path: Path, clip: ClipOptions, value_range, limit, layout) -> ImageSource:
    if path.name.lower().endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except NUMPY_FILE_ERRORS as e:
            raise BadInputError(f"{printable(str(path))}: cannot read .npy ({type(e).__name__}: {e})") from e
        where = printable(str(path))
    else:
        arr, where = _npz_member(path)
    layout = layout or "NTHWC"
    _check_shape(arr, where, layout, clip)
    n = len(arr) if limit is None else min(limit, len(arr))
    video_bytes = int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
    rows = max(1, ARRAY_CHUNK_BYTES // video_bytes)
    chunks = (arr.chunks(rows, n) if isinstance(arr, _NpzMember)
              else (arr[i:min(n, i + rows)] for i in range(0, n, rows)))
    return _array_videos(chunks, where, clip, value_range, None, layout, count=n, in_memory=False)


def _npz_member(path: Path) -> tuple[_NpzMember, str]:
    name = printable(str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{name}: cannot read .npz ({type(e).__name__}: {e})") from e
    if Reference.is_statistics(keys):
        raise BadInputError(f"{name}: holds statistics (mu/sigma), not videos")
    key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
    if key is None:
        raise BadInputError(f"{name}: expected one array of videos ('arr_0'); found {keys}")
    try:
        return _NpzMember(path, key), f"{name}[{key}]"
    except NUMPY_FILE_ERRORS as e:
        raise BadInputError(f"{name}: cannot read .npz member {key!r} ({type(e).__name__}: {e})") from e


# --- paths --------------------------------------------------------------------------

def _open_path(path: Path, clip: ClipOptions, value_range, limit, layout) -> ImageSource:
    status = path_status(path, str(path))
    if status is None:
        raise BadInputError(f"{printable(str(path))}: no such file or folder")
    if path.is_dir():
        if layout is not None:
            raise BadInputError(f"layout={layout!r} applies to arrays and tensors, not to the folder "
                                f"{printable(str(path))}")
        return _folder(path, clip, limit)
    _require_regular_file(path)
    if path.name.lower().endswith((".npy", ".npz")):
        return _array_file(path, clip, value_range, limit, layout)
    raise BadInputError(f"{printable(str(path))}: unsupported file type for videos; expected a folder of video files "
                        f"({', '.join(sorted(VIDEO_SUFFIXES))}) or of frame folders, or a .npy/.npz array")


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _folder(root: Path, clip: ClipOptions, limit) -> ImageSource:
    left_out: list[Path] = []
    files = walk_files(root, lambda name: _suffix(name) in VIDEO_SUFFIXES | FRAME_SUFFIXES, "videos", left_out)
    videos = [p for p in files if _suffix(p.name) in VIDEO_SUFFIXES]
    frames = [p for p in files if _suffix(p.name) in FRAME_SUFFIXES]
    desc = printable(str(root))
    if videos and frames:
        raise BadInputError(f"{desc}: holds both video files (e.g. {printable(str(videos[0]))}) and image files "
                            f"(e.g. {printable(str(frames[0]))}); point fidkit at a folder of videos, or at a folder "
                            "of frame folders (one sub-folder of images per video), not a mix")
    if videos:
        _import_av()  # before any work: a missing decoder is one error, not one per video
        videos = videos if limit is None else videos[:limit]

        def video_items():
            for p in videos:
                yield printable(str(p)), (lambda p=p: decode_video_file(p, clip))
        source = ImageSource(desc, len(videos), video_items, modality="video")
    elif frames:
        source = _frame_folders(root, frames, clip, limit)
    else:
        raise BadInputError(f"{desc}: no videos found (looked for {', '.join(sorted(VIDEO_SUFFIXES))} files, and "
                            f"for sub-folders of {', '.join(sorted(FRAME_SUFFIXES))} frames)")
    if left_out:
        names = [printable(p.relative_to(root).as_posix()) for p in left_out]
        more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
        source.note(f"{desc}: {len(names)} {'file is' if len(names) == 1 else 'files are'} neither a video nor a "
                    f"frame and {'was' if len(names) == 1 else 'were'} left out: {', '.join(names[:SHOWN_NAMES])}"
                    f"{more} (videos: {' '.join(sorted(VIDEO_SUFFIXES))}; frames: "
                    f"{' '.join(sorted(FRAME_SUFFIXES))})")
    return source


def natural_key(name: str) -> tuple:
    """Sort key that compares runs of digits as numbers (``frame2`` < ``frame10``), then the plain name."""
    parts = re.split(r"(\d+)", name)
    # re.split with a group alternates text (even places) and digits (odd places): like types meet in comparison
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)) + (name,)


def _frame_folders(root: Path, frames: list[Path], clip: ClipOptions, limit) -> ImageSource:
    by_folder: dict[Path, list[Path]] = {}
    for p in frames:
        by_folder.setdefault(p.parent, []).append(p)
    shown = lambda p: printable(str(p))  # noqa: E731
    if root in by_folder:
        loose = by_folder[root][0]
        if len(by_folder) == 1:
            raise BadInputError(f"{shown(root)}: holds images (e.g. {shown(loose.name)}), not videos; put each video's "
                                "frames in a sub-folder of their own (one per video), or read the images as images")
        other = next(folder for folder in by_folder if folder != root)
        raise BadInputError(f"{shown(root)}: holds images directly (e.g. {shown(loose.name)}) next to frame folders "
                            f"(e.g. {shown(other)}); each video's frames must be in a sub-folder of their own")
    for folder in by_folder:
        for parent in folder.relative_to(root).parents:
            outer = root / parent
            if outer != root and outer in by_folder:
                raise BadInputError(f"{shown(outer)}: holds frames (e.g. {shown(by_folder[outer][0].name)}) and also a "
                                    f"sub-folder of frames ({shown(folder)}); each video's frames must be alone in a "
                                    "leaf folder")
    folders = sorted(by_folder, key=lambda f: f.relative_to(root).as_posix())
    folders = folders if limit is None else folders[:limit]

    def items():
        for folder in folders:
            names = sorted(by_folder[folder], key=lambda p: natural_key(p.name))
            yield shown(folder), (lambda folder=folder, names=names: _decode_frame_folder(folder, names, clip))
    return ImageSource(shown(root), len(folders), items, modality="video")


def check_clip_pixels(where: str, width: int, height: int, clip: ClipOptions) -> bool:
    """Refuse a clip that holds more pixels than one image may (twice ``PIL.Image.MAX_IMAGE_PIXELS``, PIL's
    decompression-bomb limit), before decoding it; return whether it is above the limit itself (``huge``)."""
    limit = Image.MAX_IMAGE_PIXELS
    if not limit:
        return False
    pixels = int(width) * int(height) * clip.length
    if pixels > 2 * limit:
        raise BadInputError(f"{where}: refused, its clip of {clip.length} frames of {width} x {height} pixels holds "
                            f"{pixels:,} pixels, more than the {2 * limit:,} fidkit decodes at once (what one image "
                            f"may hold: twice PIL.Image.MAX_IMAGE_PIXELS, PIL's decompression-bomb limit); downscale "
                            "the video, take a shorter clip, or raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine and "
                            "memory allows")
    return pixels > limit


def _out_of_memory(where: str, what: str) -> BadInputError:
    return BadInputError(f"{where}: out of memory while decoding {what}; downscale it, take a shorter clip, or lower "
                         "PIL.Image.MAX_IMAGE_PIXELS so that such videos are refused before decoding")


def _decode_frame_folder(folder: Path, frames: list[Path], clip: ClipOptions) -> Loaded:
    where = printable(str(folder))
    if len(frames) < clip.frames_needed:
        raise BadInputError(f"{where}: {_frames(len(frames))}; {clip._needs()}")
    chosen = frames[clip.start:clip.frames_needed:clip.stride]
    try:  # the size from the first frame's header, before any frame is decoded
        with Image.open(chosen[0]) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001  (decoding the frame below names what is wrong with it)
        width = height = 0
    tags = {"huge"} if check_clip_pixels(printable(str(chosen[0])), width, height, clip) else set()
    arrays = []
    try:
        for p in chosen:
            arr, frame_tags = _decode_file(p)
            if arrays and arr.shape != arrays[0].shape:
                raise BadInputError(f"{printable(str(p))}: {arr.shape[1]} x {arr.shape[0]} pixels, but earlier frames "
                                    f"of this video are {arrays[0].shape[1]} x {arrays[0].shape[0]}; a video's frames "
                                    "must share one size")
            arrays.append(arr)
            tags |= frame_tags
        return np.stack(arrays), frozenset(tags)
    except MemoryError:
        raise _out_of_memory(where, f"its clip of {clip.length} frames") from None


# --- video files --------------------------------------------------------------------

def _import_av():
    try:
        import av
    except ImportError as e:
        raise BadInputError(f"reading video files needs PyAV, which is not installed: {INSTALL_HINT}") from e
    return av


def decode_video_file(path: Path, clip: ClipOptions) -> Loaded:
    """The clip of one video file as uint8 ``T x H x W x 3``, decoding no further than its last frame."""
    av = _import_av()
    where = printable(str(path))
    wanted, last = set(clip.frame_indices), clip.frames_needed - 1
    frames: list[np.ndarray] = []
    tags: set[str] = set()
    size, decoded, declared = None, 0, 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInputError(f"{where}: no video stream")
            stream = container.streams.video[0]
            declared = stream.frames  # from the header; 0 when the container does not say
            # The frame size from the stream's header, before any frame is decoded (checked again on the first
            # frame when the header does not say).
            header = stream.codec_context
            if header.width and header.height and check_clip_pixels(where, header.width, header.height, clip):
                tags.add("huge")
            for frame in container.decode(stream):
                if size is None:
                    size = (frame.width, frame.height)
                    if check_clip_pixels(where, frame.width, frame.height, clip):
                        tags.add("huge")
                elif (frame.width, frame.height) != size:
                    raise BadInputError(f"{where}: frame {decoded} is {frame.width} x {frame.height} pixels, earlier "
                                        f"frames {size[0]} x {size[1]}; a video's frames must share one size")
                if decoded in wanted:
                    frames.append(_frame_rgb(frame, tags))
                decoded += 1
                if decoded > last:
                    break
        if len(frames) < clip.length:
            truncated = f"; its header declares {declared}: is it truncated?" if declared > decoded else ""
            raise BadInputError(f"{where}: {_frames(decoded)}; {clip._needs()}{truncated}")
        if size[0] != size[1]:
            tags.add("nonsquare")
        return np.stack(frames), frozenset(tags)
    except BadInputError:
        raise
    except MemoryError:
        raise _out_of_memory(where, f"its clip of {clip.length} frames") from None
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as e:
        raise BadInputError(f"{where}: cannot decode video ({type(e).__name__}: {e}); is the file truncated or "
                            "corrupt?") from e


def _frames(n: int) -> str:
    return "1 frame" if n == 1 else f"{n} frames"


def _frame_rgb(frame, tags: set) -> np.ndarray:
    fmt = frame.format
    if any(c.is_alpha for c in fmt.components):
        # GIF decodes to BGRA whether or not a pixel is transparent: report alpha only when some pixel uses it.
        if int(frame.to_ndarray(format="rgba")[..., 3].min()) < 255:
            tags.add("alpha")
    if fmt.has_palette:
        tags.add("palette")
    elif sum(not c.is_alpha for c in fmt.components) == 1:
        tags.add("gray")
    return frame.to_ndarray(format="rgb24")
