"""Video clips out and back in: a list of PIL frames -> a ``.gif`` or ``.mp4`` file, and a file ->
its frames.

``write_video`` takes PIL images, a uint8 ``[T, H, W, 3]`` array or tensor, or a uint8 torch tensor
``[3, T, H, W]`` (the layout of the video models), optionally enlarges each frame by a whole
factor with nearest-neighbour sampling (``scale``: a 32x32 clip is a thumbnail), and writes
atomically: a temporary file in the same folder, renamed onto the path once complete.

* ``.gif``: every frame is written whole, with its own colour table and "do not dispose", so a
  reader gets exactly T frames, identical consecutive ones included (Pillow's ``save_all`` merges
  those into one longer frame, so frames are encoded one by one with Pillow's GIF frame encoder).
  A frame of at most 256 colours keeps its pixels exactly; one of more is reduced to 256 by median
  cut, without dithering. GIF stores delays in hundredths of a second: the delay is
  ``round(100 / fps)`` of them, at least 2 (viewers play shorter delays at 10).
* ``.mp4``: H.264 (libx264) in yuv420p, the format browsers play. yuv420p needs an even width and
  height, so a frame of odd size (after ``scale``) gets one more column or row, a copy of its last.
"""

from __future__ import annotations

import math
import os
import struct
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import torch

from ..checkpoint import atomic_path
from ..errors import InputError

if TYPE_CHECKING:
    from PIL import Image

FORMATS = (".gif", ".mp4")
MP4_CRF = 18  # libx264's constant-rate factor: 0 lossless, 23 its default; 18 looks lossless to most eyes
MAX_GIF_SIDE = 65535  # GIF stores width and height in 16 bits

Frames = Union[Sequence["Image.Image"], np.ndarray, torch.Tensor]


# ---------------------------------------------------------------------------------- validation
def _format(path, must_exist: bool) -> tuple[Path, str]:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path: expected a file name ending in .gif or .mp4, found {type(path).__name__}")
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise InputError(f"path: expected a file name ending in .gif or .mp4, found {path.name!r}")
    if path.is_dir():
        raise InputError(f"path: expected a video file, found a folder at {path}")
    if must_exist and not path.exists():
        raise InputError(f"path: expected a video file, found nothing at {path}")
    return path, ext


def _check_fps(fps) -> float:
    ok = not isinstance(fps, bool) and isinstance(fps, (int, float, np.integer, np.floating))
    if not (ok and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps: expected a positive number, found {fps!r}")
    return float(fps)


def _check_scale(scale) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"scale: expected a whole number of at least 1, found {scale!r}")
    return int(scale)


def _frame_arrays(frames) -> list[np.ndarray]:
    """``frames`` as a list of uint8 ``[H, W, 3]`` arrays of one size (views where possible)."""
    from PIL import Image

    if isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise InputError(f"frames: expected uint8 pixels, found dtype {frames.dtype}")
        frames, shape = frames.detach().cpu(), tuple(frames.shape)
        if frames.ndim == 4 and frames.shape[0] == 3:  # [3, T, H, W], the models' layout, wins a tie
            frames = frames.permute(1, 2, 3, 0)
        frames, layouts = frames.numpy(), "[T, H, W, 3] or [3, T, H, W]"
    elif isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise InputError(f"frames: expected uint8 pixels, found dtype {frames.dtype}")
        layouts, shape = "[T, H, W, 3]", frames.shape
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames: expected shape {layouts}, found {tuple(shape)}")
        if frames.shape[0] == 0:
            raise InputError("frames: expected at least one frame, found 0")
        if frames.shape[1] == 0 or frames.shape[2] == 0:
            raise InputError(f"frames: expected frames of at least 1x1 pixels, found "
                             f"{frames.shape[2]}x{frames.shape[1]}")
        return list(frames)
    if not isinstance(frames, (list, tuple)):
        raise InputError(f"frames: expected a list of PIL images, a uint8 array or a uint8 tensor, "
                         f"found {type(frames).__name__}")
    if not frames:
        raise InputError("frames: expected at least one frame, found an empty list")
    arrays = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, Image.Image):
            raise InputError(f"frames[{i}]: expected a PIL image, found {type(frame).__name__}")
        if frame.size != frames[0].size:
            raise InputError(f"frames[{i}]: expected the size of frames[0], {frames[0].width}x{frames[0].height}, "
                             f"found {frame.width}x{frame.height}")
        if frame.width == 0 or frame.height == 0:
            raise InputError(f"frames[{i}]: expected at least 1x1 pixels, found {frame.width}x{frame.height}")
        arrays.append(np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"), dtype=np.uint8))
    return arrays


def _enlarged(frame: np.ndarray, scale: int) -> np.ndarray:
    return frame if scale == 1 else np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


# ------------------------------------------------------------------------------------ writing
def write_video(frames: Frames, path: str | os.PathLike, fps: float = 8, *, scale: int = 1) -> Path:
    """Write ``frames`` to ``path``, a ``.gif`` or an ``.mp4`` (H.264), atomically; returns the path.

    ``frames``: a non-empty list of PIL images of one size (converted to RGB), a uint8 numpy array
    or tensor ``[T, H, W, 3]``, or a uint8 tensor ``[3, T, H, W]`` (a tensor with 3 in both places
    is read as ``[3, T, H, W]``). ``fps``: frames per second, a positive number. ``scale``: each
    frame is enlarged this many times in width and height, by repeating pixels. A failed write
    leaves neither the file nor a temporary one behind (an existing file at ``path`` stays as it was).
    """
    path, ext = _format(path, must_exist=False)
    fps, scale = _check_fps(fps), _check_scale(scale)
    arrays = _frame_arrays(frames)
    height, width = arrays[0].shape[0] * scale, arrays[0].shape[1] * scale
    if ext == ".gif" and max(height, width) > MAX_GIF_SIDE:
        raise InputError(f"scale: expected frames of at most {MAX_GIF_SIDE} pixels a side in a GIF, found "
                         f"{width}x{height} after scale={scale}")
    encode = _write_gif if ext == ".gif" else _write_mp4
    with ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_path(path))
        except OSError as e:
            raise InputError(f"path: expected a file name in a folder that can be written, found {path} "
                             f"({e.strerror or e})") from None
        encode(arrays, tmp, fps, scale)
    return path


def _write_gif(arrays: list[np.ndarray], tmp: Path, fps: float, scale: int) -> None:
    centiseconds = max(2, round(100 / fps))
    height, width = arrays[0].shape[0] * scale, arrays[0].shape[1] * scale
    # "GIF89a", the logical screen (no global colour table: each frame brings its own), then the
    # NETSCAPE2.0 extension that makes it loop forever
    header = (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
              + b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00")
    with open(tmp, "wb") as f:
        f.write(header)
        for frame in arrays:
            f.write(_gif_frame(_enlarged(frame, scale), centiseconds))
        f.write(b";")


def _gif_frame(rgb: np.ndarray, centiseconds: int) -> bytes:
    """One whole GIF frame: its graphic control extension (delay, "do not dispose"), image
    descriptor, local colour table and LZW data."""
    from PIL import GifImagePlugin

    parts = GifImagePlugin.getdata(_palette_image(rgb), duration=centiseconds * 10, disposal=1,
                                   include_color_table=True)
    return b"".join(bytes(p) for p in parts)


def _palette_image(rgb: np.ndarray):
    """uint8 ``[H, W, 3]`` -> a P image: its own colours exactly when there are at most 256, else a
    median-cut palette of 256, undithered."""
    from PIL import Image

    h, w, _ = rgb.shape
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, index = np.unique(packed.ravel(), return_inverse=True)
    if len(colours) > 256:
        return Image.fromarray(np.ascontiguousarray(rgb)).quantize(256, method=Image.Quantize.MEDIANCUT,
                                                                    dither=Image.Dither.NONE)
    image = Image.frombytes("P", (w, h), index.astype(np.uint8).tobytes())
    palette = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1).astype(np.uint8)
    image.putpalette(palette.tobytes(), "RGB")
    return image


def _write_mp4(arrays: list[np.ndarray], tmp: Path, fps: float, scale: int) -> None:
    import av

    height, width = arrays[0].shape[0] * scale, arrays[0].shape[1] * scale
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    codec = "libx264" if "libx264" in av.codecs_available else "h264"
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(MP4_CRF)}
        for frame in arrays:
            frame = _enlarged(frame, scale)
            if height % 2 or width % 2:
                frame = np.pad(frame, pad, mode="edge")
            for packet in stream.encode(_rgb_frame(frame)):
                container.mux(packet)
        for packet in stream.encode():  # flush the frames the encoder holds back
            container.mux(packet)


def _rgb_frame(rgb: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")


# ------------------------------------------------------------------------------------ reading
def read_video(path: str | os.PathLike) -> list[Image.Image]:
    """The frames of a ``.gif`` or ``.mp4`` file as RGB PIL images, all of them, in order."""
    path, ext = _format(path, must_exist=True)
    frames = _read_gif(path) if ext == ".gif" else _read_mp4(path)
    if not frames:
        raise InputError(f"path: expected a video with at least one frame, found none in {path}")
    return frames


def _read_gif(path: Path) -> list[Image.Image]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as gif:
            kind = gif.format
            frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)] if kind == "GIF" else []
    except (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError) as e:
        raise InputError(f"path: expected a readable GIF file, found a broken or unknown one at {path} ({e})") from None
    if kind != "GIF":
        raise InputError(f"path: expected a GIF file, found a {kind} image at {path}")
    return frames


def _read_mp4(path: Path) -> list[Image.Image]:
    import av
    from PIL import Image

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"path: expected a file with a video stream, found none in {path}")
            return [Image.fromarray(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"path: expected a readable MP4 file, found a broken or unknown one at {path} ({e})") from None


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate a ``.gif`` (from its first frame's delay) or an ``.mp4`` (its video stream's
    average rate) declares."""
    path, ext = _format(path, must_exist=True)
    if ext == ".gif":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as gif:
                duration = gif.info.get("duration") or 0
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"path: expected a readable GIF file, found a broken or unknown one at {path} "
                             f"({e})") from None
        if not duration:
            raise InputError(f"path: expected a GIF with a frame delay, found none in {path}")
        return 1000 / duration
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"path: expected a file with a video stream, found none in {path}")
            rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"path: expected a readable MP4 file, found a broken or unknown one at {path} ({e})") from None
    if not rate:
        raise InputError(f"path: expected a video with a frame rate, found none in {path}")
    return float(rate)
