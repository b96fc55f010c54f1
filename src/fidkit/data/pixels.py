"""In-memory images to uint8 RGB: value ranges, dtypes and layouts, by one set of rules for arrays, tensors and
the online evaluator's batches (a float image is rounded as saving it as PNG would)."""

from __future__ import annotations


import numpy as np
import torch

from fidkit.errors import BadInputError


#: How float inputs are declared: the pixel values that mean black and white.
VALUE_RANGES = {(0, 1), (-1, 1), (0, 255)}

def check_value_range(value_range) -> tuple[float, float]:
    """The one rule for a declared value range, whatever the source: ``(0, 1)``, ``(-1, 1)`` or ``(0, 255)``.
    It describes float images; uint8 images are always [0, 255]."""
    try:
        pair = tuple(float(v) for v in value_range)
    except (TypeError, ValueError):
        raise BadInputError(f"value_range={value_range!r}: use (0, 1), (-1, 1) or (0, 255)") from None
    if pair not in VALUE_RANGES:
        raise BadInputError(f"value_range={pair}: use (0, 1), (-1, 1) or (0, 255)")
    return pair

def to_uint8_nhwc(batch, where: str, value_range, *, channels_last: bool | None = None
                  ) -> list[tuple[np.ndarray, frozenset]]:
    """Check and convert one batch of images to uint8 ``H x W x 3`` arrays with tags (see :func:`to_uint8_nchw`)."""
    u8, tags = to_uint8_nchw(batch, where, value_range, channels_last=channels_last)
    arr = u8.cpu().permute(0, 2, 3, 1).numpy()
    return [(img, tags) for img in arr]

def to_uint8_nchw(batch, where: str, value_range, *, channels_last: bool | None = None
                  ) -> tuple[torch.Tensor, frozenset]:
    """Check and convert one batch of images to a uint8 ``N x 3 x H x W`` tensor, and its conversion tags.

    Tensors are NCHW and numpy arrays NHWC unless ``channels_last`` says
    otherwise; a tensor stays on its device.  A batch is 4-D: a 3-D input is
    refused (see :func:`check_image_batch_shape`).  One or four channels become three
    (tagged ``gray`` / ``alpha``).  uint8 is always [0, 255], whatever
    ``value_range`` says (it describes float inputs, so one setting serves a uint8
    reference and float samples).  Every other integer type (int8 to int64, uint16 to
    uint64) must hold values in 0..255, which are taken as they are (not scaled from
    the type's range: scale 16-bit data to 8 bits yourself); any integer batch holding
    only 0 and 1 is tagged.  Floats need a
    declared ``value_range``; they are mapped to [0, 255] and rounded, which is
    what saving them as PNG does; values that look like another range are tagged.
    """
    if isinstance(batch, torch.Tensor):
        x = batch.detach()
        nhwc = False if channels_last is None else channels_last
    elif isinstance(batch, np.ndarray):
        if not batch.dtype.isnative:  # big-endian .npy files: torch reads native byte order only
            batch = batch.astype(batch.dtype.newbyteorder("="))
        try:
            x = torch.from_numpy(np.require(batch, requirements="W"))  # read-only arrays (memory maps) are copied
        except TypeError as e:  # a dtype torch has no type for (object, strings, datetimes)
            raise BadInputError(f"{where}: images of dtype {batch.dtype} are not supported ({e})") from None
        nhwc = True if channels_last is None else channels_last
    else:
        raise BadInputError(f"{where}: batch of type {type(batch).__name__}; expected a tensor or an array")
    check_image_batch_shape(tuple(x.shape), where, channels_last=nhwc)
    if 0 in tuple(x.shape[1:]):
        raise BadInputError(f"{where}: images of shape {tuple(x.shape)} have no pixels")
    c_axis, other = (3, 1) if nhwc else (1, 3)
    if x.shape[c_axis] not in (1, 3, 4):
        hint = ""
        if x.shape[other] in (1, 3, 4):
            hint = (" (it looks channels-last: use .permute(0, 3, 1, 2))" if not nhwc
                    else " (it looks channels-first: use .transpose(0, 2, 3, 1))")
        raise BadInputError(f"{where}: {x.shape[c_axis]} channels in shape {tuple(x.shape)}; expected "
                            f"{'N x H x W x C' if nhwc else 'N x C x H x W'} with C = 1, 3 or 4{hint}")
    if nhwc:
        x = x.permute(0, 3, 1, 2)
    u8, tags = _to_uint8(x, where, value_range)
    if u8.shape[2] != u8.shape[3]:
        tags = tags | {"nonsquare"}
    if u8.shape[1] == 1:
        u8, tags = u8.expand(-1, 3, -1, -1), tags | {"gray"}
    elif u8.shape[1] == 4:
        u8, tags = u8[:, :3], tags | {"alpha"}
    return u8.contiguous(), frozenset(tags)

def check_image_batch_shape(shape: tuple, where: str, *, channels_last: bool) -> None:
    """Images come as 4-D batches.  The rule for 3-D input: it is always refused, never guessed, because it has
    two readings that give different images: one image (``C x H x W``, ``H x W x C``) or a batch of grayscale
    images (``N x H x W``): a ``3 x H x W`` uint8 batch of three grayscale images would be read as one RGB image."""
    if len(shape) == 4:
        return
    layout = "N x H x W x C arrays" if channels_last else "N x C x H x W tensors"
    if len(shape) == 3:
        single, add_axis, gray = (("H x W x C", "x[..., None]", "N x H x W x 1") if channels_last
                                  else ("C x H x W", "x[:, None]", "N x 1 x H x W"))
        raise BadInputError(f"{where}: 3-D images of shape {shape} are ambiguous: one image ({single}) or a batch of "
                            f"{shape[0]} grayscale images (N x H x W); fidkit refuses 3-D input rather than guess. "
                            f"Pass a 4-D batch of {layout}: one image as x[None], grayscale images as {gray} "
                            f"({add_axis})")
    raise BadInputError(f"{where}: images of shape {shape}; expected a 4-D batch ({layout})")

#: Unsigned types torch cannot compare or reduce (NotImplementedError), and the signed type of their width: read
#: as that, values of 2**(bits-1) and more turn negative, so "within 0..255" is decided alike.
_UNSIGNED_AS_SIGNED = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}

def _to_uint8(x: torch.Tensor, where: str, value_range) -> tuple[torch.Tensor, set]:
    if value_range is not None:
        value_range = tuple(float(v) for v in value_range)
        if value_range not in VALUE_RANGES:
            raise BadInputError(f"value_range={value_range}: use (0, 1), (-1, 1) or (0, 255)")
    if x.dtype == torch.bool or x.is_complex():
        raise BadInputError(f"{where}: images of dtype {x.dtype} are not supported")
    if not x.is_floating_point():
        # uint8 is always [0, 255] (a declared value_range describes float inputs only); every other integer
        # type must hold values in 0..255, taken as they are.  The same range checks apply to every type.
        signed = _UNSIGNED_AS_SIGNED.get(x.dtype)
        comparable = x.view(signed) if signed is not None else x
        lo, hi = (int(v) for v in comparable.aminmax()) if x.numel() else (0, 0)
        if lo < 0 or hi > 255:
            if signed is not None:
                lo, hi = _unsigned_range(x)
            dtype = str(x.dtype).replace("torch.", "")
            raise BadInputError(f"{where}: {dtype} images must hold values in 0..255 (integers are taken as 8-bit "
                                f"values, not scaled from their type's range), found {lo}..{hi}; scale them to "
                                "0..255 first (16-bit data: v * 255 // 65535), or pass floats with a value_range")
        u8 = x if x.dtype == torch.uint8 else comparable.to(torch.uint8)
        if x.numel() >= 3 * 16 * 16 and hi <= 1:
            return u8, {"range_uint8_01"}
        return u8, set()
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise BadInputError(f"{where}: images contain NaN or Inf")
    if value_range is None:
        raise BadInputError(f"{where}: float images need a declared value range: value_range=(0, 1), (-1, 1) "
                            "or (0, 255) (CLI: --value-range 0,1)")
    lo, hi = (float(v) for v in x.aminmax()) if x.numel() else (0.0, 0.0)
    tags = set()
    a, b = value_range
    if value_range == (0.0, 1.0):
        if hi > 2.0:
            tags.add("range_looks_255")
        elif lo < -0.05:
            tags.add("range_looks_pm1")
    elif value_range == (-1.0, 1.0):
        if hi > 2.0:
            tags.add("range_looks_255")
        elif lo >= 0.0 and x.numel() >= 3 * 16 * 16:
            tags.add("range_looks_01")
    elif value_range == (0.0, 255.0) and hi <= 1.0 and x.numel() >= 3 * 16 * 16:
        tags.add("range_looks_01_as_255")
    tolerance = 1e-3 * (b - a)
    if lo < a - tolerance or hi > b + tolerance:
        tags.add("range_clipped")
    return torch.round((x - a) * (255.0 / (b - a))).clamp_(0, 255).to(torch.uint8), tags

def _unsigned_range(x: torch.Tensor) -> tuple[int, int]:
    """Smallest and largest value of an unsigned tensor that torch cannot reduce (for an error message)."""
    a = x.detach().cpu().numpy()
    return int(a.min()), int(a.max())
