"""Student-vs-teacher evaluation: paired image metrics, depth-warp consistency, the random
feature distance, speed and memory, and the eval / render --student commands on tiny models."""
import json

import imageio.v2
import imageio.v3
import pytest
import torch

from nerfgan_distill import cameras, cli, images, student, teacher
from nerfgan_distill.distill import evaluate as ev
from nerfgan_distill.distill.feature_space import kid_unbiased
from nerfgan_distill.distill.reproject import warp_from_target


def _tiny_teacher(seed=3, **config):
    kwargs, resolution = teacher.tiny_config(**config)
    G = teacher.TriPlaneGenerator(**kwargs)
    G.load_state_dict(teacher.random_state(G, seed))
    G.neural_rendering_resolution = resolution
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G():
    return _tiny_teacher()


@pytest.fixture(scope="module")
def views(G):
    """The teacher's own views of 2 latents at yaw -0.2, 0, 0.2 (and their cameras)."""
    with torch.no_grad():
        z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1))
        defaults = G.camera_defaults()
        ws = G.mapping(z, cameras.frontal_camera(defaults, batch_size=2))
        cs = [cameras.frontal_camera(defaults, batch_size=2, yaw=yaw) for yaw in (-0.2, 0.0, 0.2)]
        return [G.synthesis(ws, c, noise_mode="const", deterministic=True) for c in cs], cs


@pytest.fixture(scope="module")
def model_files(G, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    teacher.save(G, folder / "teacher.safetensors")
    student.save(student.build("tiny", teacher=G), folder / "student.safetensors")
    other = _tiny_teacher(w_dim=32)
    student.save(student.build("tiny", teacher=other), folder / "other_student.safetensors")
    return folder


def test_psnr_and_ssim_are_torchmetrics_values(G):
    from torchmetrics.image import StructuralSimilarityIndexMeasure

    gen = torch.Generator().manual_seed(0)
    t = {"image": torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1, "image_raw": torch.rand(3, 3, 16, 16, generator=gen) * 2 - 1}
    s = {k: (v + 0.1 * torch.randn(v.shape, generator=gen)).clamp(-1, 1) for k, v in t.items()}
    m = ev.image_metrics(s, t)
    for key in ("image", "image_raw"):
        mse = (s[key] - t[key]).square().mean(dim=(1, 2, 3))
        assert torch.allclose(m[key]["psnr"], 10 * torch.log10(4 / mse), atol=1e-4)
        ssim = StructuralSimilarityIndexMeasure(data_range=2.0, reduction="none")(s[key], t[key])
        assert torch.allclose(m[key]["ssim"], ssim.reshape(-1), atol=1e-5)
        assert m[key]["psnr_mean"] == pytest.approx(float(m[key]["psnr"].mean()))
        assert 0 < m[key]["ssim_mean"] < 1
    same = ev.image_metrics(t, t)
    for key in ("image", "image_raw"):
        assert torch.isinf(same[key]["psnr"]).all()
        assert torch.allclose(same[key]["ssim"], torch.ones(3), atol=1e-5)


def test_a_view_warped_into_itself_is_reproduced(views):
    outs, cs = views
    raw, depth = outs[1]["image_raw"], outs[1]["image_depth"]
    warped, mask = warp_from_target(raw, cs[1], depth, cs[1], depth)
    assert mask.float().mean() > 0.99
    assert (warped - raw).abs()[mask.expand_as(raw)].max() < 1e-4


def test_teacher_views_are_consistent_and_bad_students_are_not(views):
    outs, cs = views
    pairs = [(0, 1), (1, 2), (1, 0)]
    own = ev.multiview_consistency(outs, outs, cs, pairs, final=True)
    floor = own["raw"]["teacher"]["mean_abs"]
    assert 0 < floor < float("inf") and own["raw"]["teacher"]["psnr"] < float("inf")
    assert own["raw"]["mask_fraction"] > 0.3 and own["final"]["mask_fraction"] > 0.3
    assert own["raw"]["student"] == own["raw"]["teacher"]
    flipped = [{k: v.flip(-1) for k, v in out.items()} for out in outs]
    frozen = [outs[1]] * 3  # ignores the camera: the frontal view everywhere
    for bad in (flipped, frozen):
        scores = ev.multiview_consistency(outs, bad, cs, pairs)["raw"]
        assert scores["student"]["mean_abs"] > 2 * floor
        assert scores["student"]["psnr"] < scores["teacher"]["psnr"] - 3
        assert scores["mask_fraction"] == own["raw"]["mask_fraction"]  # the teacher's mask for both


def test_feature_distance_is_zero_for_identical_sets_and_grows_with_noise(views):
    outs, _ = views
    real = torch.cat([out["image"] for out in outs])
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=gen)
    same = ev.feature_distance(real, real)
    assert abs(same["kid_randconv"]) < 1e-12 and same["samples"] == real.shape[0]
    small = ev.feature_distance(real + 0.2 * noise, real)["kid_randconv"]
    large = ev.feature_distance(real + 0.6 * noise, real)["kid_randconv"]
    assert 0 < small < large
    with pytest.raises(ValueError, match="one shape"):
        kid_unbiased(torch.zeros(3, 4), torch.zeros(2, 4))


def test_speed_and_memory_covers_every_path_and_batch(G, tmp_path):
    S = student.build("tiny", teacher=G)
    result = ev.speed_and_memory(G, S, [1, 2], "cpu", repeats=1, warmup=0, json_path=tmp_path / "speed.json",
                                 plot_path=tmp_path / "speed.png")
    rows = {(r["path"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {(p, b) for p in ("teacher_reference", "teacher_fast", "student") for b in (1, 2)}
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["median_ms"] > 0 and row["peak_rss_mib"] > 0
        assert row["peak_rss_delta_mib"] >= 0
    data = json.loads((tmp_path / "speed.json").read_text())
    assert data["rows"] == result["rows"] and data["meta"]["device_type"] == "cpu" and "torch" in data["meta"]
    assert imageio.v3.imread(tmp_path / "speed.png").ndim == 3


def test_eval_command_writes_metrics_and_plot(model_files, tmp_path, capsys):
    out = tmp_path / "run" / "metrics.json"
    code = cli.main(["eval", "--teacher", str(model_files / "teacher.safetensors"), "--student",
                     str(model_files / "student.safetensors"), "--out", str(out), "--count", "2", "--batch", "2",
                     "--yaw-steps", "2", "--pitch-steps", "1", "--random-views", "1", "--speed-batches", "1", "2",
                     "--speed-repeats", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    m = json.loads(out.read_text())
    assert m["protocol"]["latent_seed"] == ev.EVAL_SEED_OFFSET and m["protocol"]["views"] == 3
    assert len(m["image_metrics"]["per_view"]) == 3
    for key in ("image", "image_raw"):
        assert m["image_metrics"][key]["psnr"]["finite_fraction"] == 1.0
    raw = m["multiview_consistency"]["raw"]
    assert raw["student"]["mean_abs"] > raw["teacher"]["mean_abs"] > 0  # an untrained student
    assert m["feature_distance"]["kid_randconv"] > 0 and m["feature_distance"]["samples"] == 6
    assert {r["batch"] for r in m["speed"]["rows"]} == {1, 2}
    assert imageio.v3.imread(out.with_name("metrics_speed.png")).ndim == 3
    assert "PSNR" in capsys.readouterr().out


@pytest.mark.parametrize("swap, needle", [("student-as-teacher", "student file"), ("teacher-as-student", "teacher file"),
                                          ("missing", "does not exist"), ("other", "w_dim 32 (teacher: 64)")])
def test_eval_refuses_bad_inputs_in_one_line(model_files, tmp_path, capsys, swap, needle):
    t, s = model_files / "teacher.safetensors", model_files / "student.safetensors"
    t, s = {"student-as-teacher": (s, s), "teacher-as-student": (t, t), "missing": (tmp_path / "nope.safetensors", s),
            "other": (t, model_files / "other_student.safetensors")}[swap]
    code = cli.main(["eval", "--teacher", str(t), "--student", str(s), "--out", str(tmp_path / "m.json"), "--quiet",
                     "--no-speed", "--count", "2", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


def test_render_student_turntable_gif(model_files, tmp_path, capsys):
    code = cli.main(["render", str(model_files / "teacher.safetensors"), "--student",
                     str(model_files / "student.safetensors"), "--turntable", "--frames", "3", "--fps", "10",
                     "--deterministic", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 0
    frames = imageio.v3.imread(tmp_path / "seed0000_turntable_compare.gif", index=None)
    assert frames.shape == (3, 32, 3 * 32, 3)
    assert not (frames[0] == frames[1]).all()
    code = cli.main(["render", str(model_files / "teacher.safetensors"), "--student",
                     str(model_files / "student.safetensors"), "--yaw", "0.2", "--device", "cpu", "--out",
                     str(tmp_path)])
    assert code == 0 and imageio.v3.imread(tmp_path / "seed0000_view0_compare.png").shape == (32, 96, 3)
    code = cli.main(["render", str(model_files / "teacher.safetensors"), "--student",
                     str(model_files / "other_student.safetensors"), "--device", "cpu", "--out", str(tmp_path)])
    assert code == 2 and "w_dim" in capsys.readouterr().err


def test_mp4_and_grid_writers(tmp_path):
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, 15, 20, generator=gen) * 2 - 1 for _ in range(4)]
    images.write_mp4(tmp_path / "a.mp4", frames, fps=8)
    with imageio.v2.get_reader(tmp_path / "a.mp4") as reader:
        assert reader.count_frames() == 4 and reader.get_meta_data()["size"] == (20, 16)  # padded to even
    grid = images.image_grid(frames[:3], columns=2, padding=1)
    assert grid.shape == (3, 31, 41) and torch.equal(grid[:, 16:, 21:], torch.full((3, 15, 20), -1.0))
    assert torch.equal(images.to_uint8(frames[0]), (frames[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0))


class _FakeInception(torch.nn.Module):
    """The interface of StyleGAN2-ADA's TorchScript Inception (uint8 in, features out): not Inception."""

    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        x = x.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def test_inception_weights_drive_torchmetrics_fid_and_kid(views, tmp_path):
    from nerfgan_distill.distill.feature_space import WeightsError, load_inception

    path = tmp_path / "fake_inception.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    extractor = load_inception(path)
    assert extractor.num_features == 6
    outs, _ = views
    real = torch.cat([out["image"] for out in outs])
    metrics = ev.InceptionDistances(extractor, samples=real.shape[0], device="cpu")
    metrics.update(real + 0.3, real)
    result = metrics.compute()
    assert result["fid"] > 0 and result["kid"] == result["kid"]
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(WeightsError, match="TorchScript"):
        load_inception(tmp_path / "junk.pt")
