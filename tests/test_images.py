"""Tests of nerfgan_distill.images: PNG, GIF and MP4 writers (atomic), the uint8 conversion
and image grids. Files are read back with imageio / Pillow."""
import io
import os
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from nerfgan_distill import formats, images
from nerfgan_distill.images import image_grid, to_uint8, write_gif, write_mp4, write_png


def random_image(h=6, w=8, seed=0):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)) * 2.2 - 1.1


def test_to_uint8_formula():
    image = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.001, 0.5, 0.99, 1.0, 3.0]).reshape(1, 3, 3).expand(3, 3, 3)
    out = to_uint8(image)
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 3)
    # x * 127.5 + 128, clamped to [0, 255], truncated
    assert out[..., 0].flatten().tolist() == [0, 0, 64, 128, 128, 191, 254, 255, 255]
    for bad in (image[0], image[None], image[:2], image.numpy()):
        with pytest.raises(ValueError, match="to_uint8: image must be a \\[3, H, W\\] tensor"):
            to_uint8(bad)


def test_png_round_trip(tmp_path):
    image = random_image(5, 7)
    write_png(tmp_path / "x.png", image)
    pixels = iio.imread(tmp_path / "x.png")
    assert pixels.shape == (5, 7, 3) and np.array_equal(pixels, to_uint8(image).numpy())
    with pytest.raises(ValueError, match="image"):
        write_png(tmp_path / "y.png", image[0])
    assert sorted(os.listdir(tmp_path)) == ["x.png"]


def test_writers_are_atomic(tmp_path, monkeypatch):
    frames = [random_image(8, 8, seed=i) for i in range(3)]

    def broken(*args):
        raise OSError("disk full")

    written = []
    for name, write in [("a.png", lambda p: write_png(p, frames[0])), ("a.gif", lambda p: write_gif(p, frames, 10)),
                        ("a.mp4", lambda p: write_mp4(p, frames, 10))]:
        path = tmp_path / name
        path.write_bytes(b"old")
        written.append(name)
        with monkeypatch.context() as m:  # the rename fails: the old file stays, the temporary one goes
            m.setattr(formats.os, "replace", broken)
            m.setattr(images.os, "replace", broken)
            with pytest.raises(OSError, match="disk full"):
                write(path)
        assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == sorted(written)
        write(path)
        assert path.read_bytes() != b"old" and sorted(os.listdir(tmp_path)) == sorted(written)


def test_image_grid_layout():
    imgs = [torch.full((3, 2, 3), float(i)) for i in range(5)]
    grid = image_grid(imgs, columns=3, padding=1, pad_value=-1.0)
    assert grid.shape == (3, 2 * 2 + 1, 3 * 3 + 2)
    assert torch.equal(grid[:, 3:5, 4:7], imgs[4])  # row 1, column 1
    assert torch.equal(grid[:, 0:2, 8:11], imgs[2])
    assert (grid[:, 2, :] == -1).all() and (grid[:, :, 3] == -1).all()  # padding row and column
    assert (grid[:, 3:5, 8:11] == -1).all()  # the unfilled last cell
    batch = torch.stack(imgs)
    assert torch.equal(image_grid(batch, columns=3, padding=1), grid)
    assert torch.equal(image_grid(imgs, columns=5), torch.cat(imgs, dim=2))
    assert image_grid(imgs[:2], columns=8).shape == (3, 2, 6)  # no empty columns


@pytest.mark.parametrize("images_,columns,padding,match", [
    ([], 2, 0, "non-empty list"),
    (torch.zeros(3, 4, 4), 2, 0, "\\[N, 3, H, W\\]"),
    ([torch.zeros(3, 4, 4), torch.zeros(3, 4, 5)], 2, 0, "images\\[1\\] is \\[3, 4, 5\\]"),
    ([torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)], 2, 0, "images\\[1\\] must be"),
    ([torch.zeros(3, 4, 4), "x"], 2, 0, "images\\[1\\] must be"),
    ([torch.zeros(3, 4, 4)], 0, 0, "columns"),
    ([torch.zeros(3, 4, 4)], 1.5, 0, "columns"),
    ([torch.zeros(3, 4, 4)], 1, -1, "padding"),
])
def test_image_grid_rejects_bad_input(images_, columns, padding, match):
    with pytest.raises(ValueError, match=match):
        image_grid(images_, columns, padding)


def test_gif_frames_fps_and_loop(tmp_path):
    # distinct frames: Pillow merges identical consecutive ones
    frames = [torch.full((3, 4, 6), -1.0 + i) for i in range(3)]
    frames[1][0] = 1.0
    arrays = [to_uint8(f).numpy() for f in frames]
    for i, given in enumerate([frames, arrays, torch.stack(frames)]):
        path = tmp_path / f"x{i}.gif"
        write_gif(path, given, fps=20)
        with Image.open(path) as im:
            assert im.n_frames == 3 and im.info["loop"] == 0 and im.info["duration"] == 50
        read = iio.imread(path, index=None)
        assert read.shape == (3, 4, 6, 3)
        # flat colours survive the GIF palette exactly
        assert np.array_equal(read[..., :3], np.stack(arrays))


def test_mp4_frames_and_fps(tmp_path):
    frames = [random_image(16, 24, seed=i) for i in range(4)]
    path = tmp_path / "x.mp4"
    write_mp4(path, frames, fps=8)
    meta = iio.immeta(path, plugin="FFMPEG")
    assert meta["fps"] == 8 and meta["size"] == (24, 16) and meta["codec"] == "h264"
    read = iio.imread(path, plugin="FFMPEG", index=None)
    assert read.shape == (4, 16, 24, 3)


@pytest.mark.parametrize("write", [write_gif, write_mp4])
@pytest.mark.parametrize("frames,fps,match", [
    ([], 10, "non-empty list"),
    ([torch.zeros(3, 4, 4), torch.zeros(3, 4, 6)], 10, "frames\\[1\\] is 4x6, frames\\[0\\] is 4x4"),
    ([torch.zeros(4, 4, 3)], 10, "frames\\[0\\] must be \\[3, H, W\\]"),
    ([np.zeros((4, 4, 3), np.float32)], 10, "frames\\[0\\] must be.*got float32"),
    ([np.zeros((4, 4), np.uint8)], 10, "frames\\[0\\] must be"),
    ([torch.zeros(3, 4, 4)], 0, "fps must be a positive number"),
    ([torch.zeros(3, 4, 4)], "30", "fps must be a positive number"),
])
def test_video_writers_reject_bad_input(tmp_path, write, frames, fps, match):
    with pytest.raises(ValueError, match=f"{write.__name__}: .*{match}"):
        write(tmp_path / "v", frames, fps)
    assert os.listdir(tmp_path) == []


def test_mp4_pads_odd_sizes_to_even(tmp_path):
    import imageio.v2

    write_mp4(tmp_path / "v.mp4", [torch.zeros(3, 5, 7)] * 2, 10)
    with imageio.v2.get_reader(tmp_path / "v.mp4") as reader:
        assert reader.get_meta_data()["size"] == (8, 6)


def test_mp4_without_imageio_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    with pytest.raises(RuntimeError, match=r'pip install "nerfgan-distill\[video\]"'):
        write_mp4(tmp_path / "v.mp4", [torch.zeros(3, 4, 4)], 10)
    assert os.listdir(tmp_path) == []


def test_png_bytes_are_a_real_png(tmp_path):
    write_png(tmp_path / "x.png", random_image())
    with Image.open(io.BytesIO((tmp_path / "x.png").read_bytes())) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (8, 6)
