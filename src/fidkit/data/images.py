"""Decoding image files into uint8 RGB arrays, with every conversion named.

The anchors call ``PIL.Image.convert("RGB")`` and stop there.  That is right
for 8-bit grayscale, palette and CMYK images, but it silently clips 16-bit
images to 255 (nearly white) and drops alpha without a word.  Here 16-bit data
is scaled to 8 bits, and each conversion is reported as a tag so that the
caller can warn once per source instead of once per file.
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, UnidentifiedImageError

from fidkit.errors import BadInputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm"})
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})

#: Conversion tags and how they are explained to the user.
TAG_TEXT = {
    "alpha": "had an alpha channel, which was dropped (composite onto a background yourself if that matters)",
    "gray": "were grayscale and were repeated to 3 channels",
    "palette": "were palette images and were expanded to RGB",
    "16bit": "had 16-bit samples, which were scaled to 8 bits (v * 255 / 65535, rounded)",
    "cmyk": "were CMYK and were converted to RGB with PIL's conversion",
    "other": "had an unusual mode and were converted to RGB with PIL",
    "jpeg": "are JPEG-compressed: lossy compression alone moves FID (by ~20 in clean-fid's study); "
            "save generated samples losslessly (PNG) and compare against references processed the same way",
    "range_looks_255": "were declared as floats in [0, 1] or [-1, 1] but hold values above 2: they look like "
                       "[0, 255] data, and were clipped (declare value_range=(0, 255) if so)",
    "range_looks_pm1": "were declared as [0, 1] but hold values below 0: they look like [-1, 1] data "
                       "(declare value_range=(-1, 1) if so)",
    "range_looks_01": "were declared as [-1, 1] but hold no negative value: they look like [0, 1] data "
                      "(declare value_range=(0, 1) if so)",
    "range_looks_01_as_255": "were declared as [0, 255] but all values are at most 1: they look like [0, 1] data",
    "range_clipped": "had values outside the declared range, which were clipped",
    "huge": "declare more pixels than PIL's decompression-bomb warning limit (about 89 million); each takes "
            "hundreds of MB while decoded (PIL refuses twice that); downscale them first if memory is short",
    "nonsquare": "are not square: a resize that squashes to a square (Inception's, DINOv2's, I3D's) changes their "
                 "aspect ratio, which changes the numbers; crop='center' (--crop center) centre-crops every image "
                 "(every video frame) to a square first, and is recorded in the statistics",
    "range_uint8_01": "are integers (uint8, int16, ...) but hold only the values 0 and 1: they look like [0, 1] "
                      "floats cast to uint8 without scaling (or to another integer type; multiply by 255 and round "
                      "before casting, or pass the floats with value_range=(0, 1))",
    "animated": "hold more than one frame (animated GIF, PNG or WebP, multi-page TIFF): only the first frame of "
                "each was used (the first 10 are named in warnings of their own; read animations as videos, with "
                "modality='video', if that was meant)",
}

#: Tags that start with this are notes about one item (``"note:only the first of 12 frames was used"``): they are
#: reported naming the item, one warning each, instead of being counted like the tags of :data:`TAG_TEXT`.
NOTE_PREFIX = "note:"


def decode_image(data: bytes, name: str) -> tuple[np.ndarray, frozenset[str]]:
    """Decode an encoded image to ``H x W x 3`` uint8; return it with its conversion tags."""
    try:
        # Decoding runs in worker threads: no warnings.catch_warnings here (it swaps process-wide state), the size
        # is compared with PIL's limit directly.
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr, tags = to_rgb_uint8(im, name)
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.size[0] * im.size[1] > limit:
                tags = tags | {"huge"}
            frames = _frame_count(im)
            if frames != 1:
                counted = (f"the first of {frames} frames" if frames
                           else "the first frame (the others could not be read)")
                tags = tags | {"animated", f"{NOTE_PREFIX}holds more than one frame; only {counted} was used"}
        return arr, tags
    except Image.DecompressionBombError as e:
        raise BadInputError(f"{name}: refused, it declares more than {Image.MAX_IMAGE_PIXELS * 2:,} pixels "
                            f"(PIL's decompression-bomb limit; raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine): "
                            f"{e}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadInputError(f"{name}: cannot read image ({e})") from e
    except MemoryError:
        raise BadInputError(f"{name}: out of memory while decoding it; downscale it, or lower "
                            "PIL.Image.MAX_IMAGE_PIXELS so that such images are refused before decoding") from None


def _frame_count(im: Image.Image) -> int:
    """Frames (or pages) in an opened image: 1 for a still image, 0 when the frames after the first are damaged."""
    if im.format == "MPO":  # a camera JPEG's extra pictures (a preview, the other eye of a stereo pair)
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        return 0


def to_rgb_uint8(im: Image.Image, name: str) -> tuple[np.ndarray, frozenset[str]]:
    tags = set()
    if im.format == "JPEG" or im.format == "MPO":
        tags.add("jpeg")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (PIL opens 16-bit PNG/TIFF as I;16, some readers as I).
        a = np.asarray(im, dtype=np.int64)
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            raise BadInputError(f"{name}: 32-bit integer image with values outside 0..65535 is not supported")
        gray8 = ((a * 255 + 32767) // 65535).astype(np.uint8)
        tags.update(("16bit", "gray"))
        if gray8.shape[0] != gray8.shape[1]:
            tags.add("nonsquare")
        return np.repeat(gray8[:, :, None], 3, axis=2), frozenset(tags)
    if mode == "F":
        raise BadInputError(f"{name}: floating-point images are not supported; convert to 8-bit first")
    if mode == "RGB":
        pass
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        tags.add("alpha")
        if mode in ("P", "PA"):
            tags.add("palette")
        im = im.convert("RGBA").convert("RGB") if mode != "RGBA" else im.convert("RGB")
    elif mode in ("L", "1"):
        tags.add("gray")
        im = im.convert("RGB")
    elif mode == "P":
        tags.add("palette")
        im = im.convert("RGB")
    elif mode == "CMYK":
        tags.add("cmyk")
        im = im.convert("RGB")
    else:
        tags.add("other")
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise BadInputError(f"{name}: decoded to shape {arr.shape}, expected H x W x 3")
    if arr.shape[0] != arr.shape[1]:
        tags.add("nonsquare")
    return arr, frozenset(tags)
