"""Images in: any file, bytes, PIL image, array or tensor -> a checked PIL image, and the tensor a
model takes.

``load_image`` decodes and checks (size limits, modes, animations give their first frame);
``image_to_tensor`` converts, resizes (squash / crop / pad) and returns ``uint8 [C, H, W]``;
``normalize`` and ``preprocess`` turn images into the float batch a ViT takes, driven by a
``ViTConfig``'s preprocessing fields.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError

MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own warning threshold (a 0.25 GB 24-bit image)


def load_image(image, name: str | None = None):
    """Any image input -> a decoded PIL image of width and height >= 1, every problem an InputError.

    ``image``: a path, encoded bytes (or a binary file object), a PIL image, a numpy array
    ``[H, W]`` / ``[H, W, C]`` (C = 1, 3 or 4; uint8, uint16, bool, or float in [0, 1]) or a torch
    tensor ``[C, H, W]`` / ``[H, W]`` (torchvision's layout). Animated images give their first frame;
    files of more than ``MAX_IMAGE_PIXELS`` pixels are refused before they are decoded (a
    decompression-bomb guard). ``name`` replaces the input in error messages."""
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(image, torch.Tensor):
        array = image.detach().cpu()
        array = (array.permute(1, 2, 0) if array.ndim == 3 else array).numpy()
        return _array_to_image(array, name or "image tensor")
    if isinstance(image, np.ndarray):
        return _array_to_image(image, name or "image array")
    if isinstance(image, Image.Image):
        name = name or "image"
        if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
            image.seek(0)
        return _checked(image, name)
    if isinstance(image, (bytes, bytearray, memoryview)):
        name, source = name or "image bytes", io.BytesIO(bytes(image))
        if not len(source.getbuffer()):
            raise InputError(f"{name}: expected an encoded image, found 0 bytes")
    elif hasattr(image, "read"):
        name, source = name or getattr(image, "name", "image file object"), image
    elif isinstance(image, (str, os.PathLike)):
        source = Path(image).expanduser()
        name = name or str(source)
        if not source.is_file():
            raise InputError(f"{name}: expected an image file, found {'a folder' if source.is_dir() else 'nothing there'}")
        if source.stat().st_size == 0:
            raise InputError(f"{name}: expected an image file, found an empty (0-byte) file")
    else:
        raise InputError(f"{name or 'image'}: expected a path, bytes, a PIL image, a numpy array or a tensor, "
                         f"found {type(image).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as opened:
                _check_pixels(opened.size, name)
                opened.seek(0)  # the first frame of an animation
                opened.load()
                loaded = opened.copy() if getattr(opened, "n_frames", 1) > 1 else opened
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{name}: expected a readable image, found a broken or unknown file ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputError(f"{name}: expected a readable image, found a broken or truncated file ({e})") from None
    return _checked(loaded, name)


def _check_pixels(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise InputError(f"{name}: expected an image of at least 1x1 pixels, found {w}x{h}")
    if w * h > MAX_IMAGE_PIXELS:
        raise InputError(f"{name}: expected at most {MAX_IMAGE_PIXELS:,} pixels (a decompression-bomb guard; raise "
                         f"multimodal.media.images.MAX_IMAGE_PIXELS for larger images), found {w}x{h} = {w * h:,}")


def _checked(image, name: str):
    _check_pixels(image.size, name)
    return image


def _array_to_image(array: np.ndarray, name: str):
    """numpy ``[H, W]`` or ``[H, W, C]`` -> PIL: uint8 as is, 16-bit scaled to 8 bits, bool to 0/255,
    floats in [0, 1] times 255."""
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"{name}: expected [height, width] or [height, width, 1|3|4 channels], found shape "
                         f"{tuple(array.shape)}")
    _check_pixels((array.shape[1], array.shape[0]), name)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError(f"{name}: expected finite pixel values, found NaN or infinity")
        if array.min() < 0 or array.max() > 1:
            raise InputError(f"{name}: expected floating-point pixels in [0, 1], found values in "
                             f"[{array.min():.3g}, {array.max():.3g}]")
        array = np.round(array.astype(np.float64) * 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8, uint16, bool or float pixels, found dtype {array.dtype}")
    return Image.fromarray(np.ascontiguousarray(array))  # L, RGB or RGBA from the shape


def _to_8_bit(image):
    """16-bit and 32-bit grey (PIL modes I;16*, I, F) -> 8-bit L, scaled rather than clipped
    (Pillow's own conversion clips everything above 255 to white)."""
    from PIL import Image

    array = np.asarray(image)
    if image.mode == "F":
        top = 1.0 if float(array.max(initial=0)) <= 1.0 else 255.0
        scaled = np.clip(array / top, 0, 1) * 255
    else:  # integer: a 16-bit range unless the values say 8
        top = 255 if int(array.max(initial=0)) <= 255 else 65535
        scaled = np.clip(array.astype(np.float64), 0, top) * (255 / top)
    return Image.fromarray(np.round(scaled).astype(np.uint8))


def image_to_tensor(image, size: int | tuple[int, int], mode: str = "RGB", resize: str = "squash",
                    crop_pct: float = 1.0, interpolation: str = "bicubic") -> torch.Tensor:
    """Any image ``load_image`` takes -> uint8 ``[C, H, W]`` of ``size`` (int or (h, w)).

    ``mode``: the PIL mode converted to (``L`` grey, ``RGB``, ``RGBA``); transparent pixels are
    composited onto white, 16-bit images scaled to 8 bits. ``resize="squash"``: to ``size``
    exactly; ``"shorter"``: the shorter side to ``size / crop_pct``, then a centre crop (timm's
    evaluation transform)."""
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    image = load_image(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _to_8_bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") and mode != image.mode:  # composite onto white, not black
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    try:
        image = image.convert(mode)
    except ValueError as e:
        raise InputError(f"image: expected a mode Pillow converts to {mode}, found {image.mode} ({e})") from None
    method = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[interpolation]
    if resize == "squash":
        image = image.resize((w, h), method)
    else:
        scale = max(h, w) / crop_pct / min(image.size)
        rw, rh = max(w, round(image.size[0] * scale)), max(h, round(image.size[1] * scale))
        image = image.resize((rw, rh), method)
        left, top = (rw - w) // 2, (rh - h) // 2
        image = image.crop((left, top, left + w, top + h))
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or float in [0, 255]) ``[B, C, H, W]`` -> float32 ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - mean_t) / std_t


def preprocess(images, config) -> torch.Tensor:
    """PIL images or image files (one or a list) -> the float ``[B, C, H, W]`` batch a ViT with
    ``config`` (a ``ViTConfig``) takes: converted to ``image_mode``, resized, normalised."""
    items = images if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise InputError("images: expected at least one image, found an empty list")
    batch = torch.stack([image_to_tensor(i, config.image_size, config.image_mode, config.resize, config.crop_pct,
                                         config.interpolation) for i in items])
    return normalize(batch, config.image_mean, config.image_std)
