"""Video files: GIF and MP4 written from PIL frames, arrays and tensors, read back frame for frame;
bad input, and writes that fail halfway."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from multimodal.errors import InputError
from multimodal.media import video as V

BACKGROUND, SQUARE, STRIPE = (20, 40, 200), (250, 200, 0), (0, 0, 0)


def moving_square(frames: int = 16, size: int = 32) -> np.ndarray:
    """uint8 [T, H, W, 3]: an 8x8 square crossing a blue field above a black stripe (three colours)."""
    clip = np.empty((frames, size, size, 3), np.uint8)
    clip[:] = BACKGROUND
    clip[:, -3:] = STRIPE
    for t in range(frames):
        x = t * (size - 8) // max(frames - 1, 1)
        clip[t, 10:18, x:x + 8] = SQUARE
    return clip


def as_pil(clip: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(frame) for frame in clip]


def as_array(frames: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(f) for f in frames])


def enlarged(clip: np.ndarray, scale: int) -> np.ndarray:
    return clip.repeat(scale, axis=1).repeat(scale, axis=2)


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("scale", [1, 3])
def test_gif_round_trip_is_exact(tmp_path, scale):
    clip = moving_square()
    path = V.write_video(as_pil(clip), tmp_path / "clip.gif", fps=8, scale=scale)
    assert path == tmp_path / "clip.gif" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif"]
    back = V.read_video(path)
    assert len(back) == 16 and all(f.mode == "RGB" and f.size == (32 * scale, 32 * scale) for f in back)
    np.testing.assert_array_equal(as_array(back), enlarged(clip, scale))
    assert V.video_fps(path) == pytest.approx(100 / 12)  # 1/8 s is 12 hundredths in a GIF


def test_mp4_round_trip_is_close(tmp_path):
    clip = moving_square()
    path = V.write_video(as_pil(clip), tmp_path / "clip.mp4", fps=8, scale=4)
    back = V.read_video(path)
    assert len(back) == 16 and all(f.mode == "RGB" and f.size == (128, 128) for f in back)
    error = np.abs(as_array(back).astype(np.float64) - enlarged(clip, 4)).mean()
    assert error < 12, f"mean absolute error {error:.2f} of 255"
    assert V.video_fps(path) == pytest.approx(8)


def test_mp4_of_odd_size_gains_a_copied_column_and_row(tmp_path):
    clip = moving_square()[:4, :31, :29]
    back = V.read_video(V.write_video(clip, tmp_path / "odd.mp4", fps=7.5))
    assert len(back) == 4 and back[0].size == (30, 32)
    assert V.video_fps(tmp_path / "odd.mp4") == pytest.approx(7.5)


def test_gif_keeps_identical_consecutive_frames(tmp_path):
    clip = moving_square(frames=6)[[0, 0, 0, 1, 1, 5]]  # runs of identical frames
    back = V.read_video(V.write_video(as_pil(clip), tmp_path / "still.gif"))
    assert len(back) == 6
    np.testing.assert_array_equal(as_array(back), clip)
    still = V.read_video(V.write_video([Image.new("RGB", (8, 8), SQUARE)] * 5, tmp_path / "same.gif"))
    assert len(still) == 5 and all(f.getcolors() == [(64, SQUARE)] for f in still)


def test_gif_of_many_colours_is_quantised(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    back = as_array(V.read_video(V.write_video(noise, tmp_path / "noise.gif")))
    assert back.shape == noise.shape and np.abs(back.astype(np.int64) - noise).mean() < 16


def test_arrays_and_tensors_are_frames_too(tmp_path):
    clip = moving_square(frames=4)
    inputs = {"array": clip, "thwc": torch.from_numpy(clip), "cthw": torch.from_numpy(clip).permute(3, 0, 1, 2),
              "tuple": tuple(as_pil(clip)), "grey": [Image.fromarray(f).convert("L") for f in clip]}
    for name, frames in inputs.items():
        back = as_array(V.read_video(V.write_video(frames, tmp_path / f"{name}.gif")))
        expected = np.stack([np.asarray(Image.fromarray(f).convert("L").convert("RGB")) for f in clip]) \
            if name == "grey" else clip
        np.testing.assert_array_equal(back, expected, err_msg=name)


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("change, match", [
    ({"path": "clip.avi"}, r"^path: expected a file name ending in \.gif or \.mp4, found 'clip\.avi'"),
    ({"path": "clip"}, r"^path: expected a file name ending in \.gif or \.mp4"),
    ({"frames": []}, r"^frames: expected at least one frame, found an empty list"),
    ({"frames": np.zeros((0, 8, 8, 3), np.uint8)}, r"^frames: expected at least one frame, found 0"),
    ({"frames": [Image.new("RGB", (8, 8)), Image.new("RGB", (8, 9))]},
     r"^frames\[1\]: expected the size of frames\[0\], 8x8, found 8x9"),
    ({"frames": [Image.new("RGB", (8, 8)), np.zeros((8, 8, 3), np.uint8)]}, r"^frames\[1\]: expected a PIL image"),
    ({"frames": np.zeros((2, 8, 8, 3), np.float32)}, r"^frames: expected uint8 pixels, found dtype float32"),
    ({"frames": torch.zeros(2, 8, 8, 3)}, r"^frames: expected uint8 pixels, found dtype torch.float32"),
    ({"frames": np.zeros((2, 8, 8), np.uint8)}, r"^frames: expected shape \[T, H, W, 3\], found \(2, 8, 8\)"),
    ({"frames": torch.zeros(4, 2, 8, 8, dtype=torch.uint8)}, r"^frames: expected shape .*\(4, 2, 8, 8\)"),
    ({"frames": "clip.gif"}, r"^frames: expected a list of PIL images"),
    ({"fps": 0}, r"^fps: expected a positive number, found 0"),
    ({"fps": -8}, r"^fps: expected a positive number, found -8"),
    ({"fps": float("nan")}, r"^fps: expected a positive number, found nan"),
    ({"fps": "8"}, r"^fps: expected a positive number, found '8'"),
    ({"fps": True}, r"^fps: expected a positive number, found True"),
    ({"scale": 0}, r"^scale: expected a whole number of at least 1, found 0"),
    ({"scale": 2.0}, r"^scale: expected a whole number of at least 1, found 2.0"),
    ({"scale": False}, r"^scale: expected a whole number of at least 1, found False"),
])
def test_bad_input_names_the_argument(tmp_path, change, match):
    args = {"frames": as_pil(moving_square(frames=2)), "path": "clip.gif", "fps": 8, "scale": 1} | change
    with pytest.raises(InputError, match=match):
        V.write_video(args["frames"], tmp_path / args["path"], fps=args["fps"], scale=args["scale"])
    assert list(tmp_path.iterdir()) == []


def test_reading_bad_files(tmp_path):
    with pytest.raises(InputError, match=r"^path: expected a video file, found nothing at"):
        V.read_video(tmp_path / "missing.gif")
    (tmp_path / "clip.webm").write_bytes(b"\x1a\x45\xdf\xa3")
    with pytest.raises(InputError, match=r"^path: expected a file name ending in \.gif or \.mp4, found 'clip\.webm'"):
        V.read_video(tmp_path / "clip.webm")
    (tmp_path / "folder.gif").mkdir()
    with pytest.raises(InputError, match=r"^path: expected a video file, found a folder"):
        V.read_video(tmp_path / "folder.gif")
    for name in ("broken.gif", "broken.mp4"):
        (tmp_path / name).write_bytes(b"not a video at all" * 10)
        with pytest.raises(InputError, match=r"^path: expected a readable (GIF|MP4) file"):
            V.read_video(tmp_path / name)
    Image.new("RGB", (4, 4)).save(tmp_path / "image.gif.png", format="PNG")
    (tmp_path / "image.gif.png").rename(tmp_path / "png.gif")
    with pytest.raises(InputError, match=r"^path: expected a GIF file, found a PNG image"):
        V.read_video(tmp_path / "png.gif")


# ---------------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("ext, encoder", [(".gif", "_gif_frame"), (".mp4", "_rgb_frame")])
def test_a_failing_encoder_leaves_no_file(tmp_path, monkeypatch, ext, encoder):
    real, calls = getattr(V, encoder), []

    def fails_halfway(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("encoder broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(V, encoder, fails_halfway)
    clip = as_pil(moving_square())
    with pytest.raises(RuntimeError, match="encoder broke"):
        V.write_video(clip, tmp_path / f"clip{ext}")
    assert len(calls) == 8 and list(tmp_path.iterdir()) == []
    (tmp_path / f"clip{ext}").write_bytes(b"the previous file")
    calls.clear()
    with pytest.raises(RuntimeError, match="encoder broke"):
        V.write_video(clip, tmp_path / f"clip{ext}")
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{ext}"]
    assert (tmp_path / f"clip{ext}").read_bytes() == b"the previous file"


def test_an_unwritable_folder_is_an_input_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InputError, match=r"^path: expected a file name in a folder that can be written"):
        V.write_video(as_pil(moving_square(frames=2)), tmp_path / "file" / "clip.gif")
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(InputError, match=r"^path: expected a video file, found a folder"):
        V.write_video(as_pil(moving_square(frames=2)), tmp_path / "folder.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.mp4"]
    assert list((tmp_path / "folder.mp4").iterdir()) == []
