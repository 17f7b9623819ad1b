"""The distillation data pipeline: per-sample determinism, pose distributions, EG3D datasets,
the teacher sources and the `generate` cache (resume, ranks, refusals)."""
import json
import math
import zipfile

import pytest
import torch
from PIL import Image

from nerfgan_distill import cameras, teacher
from nerfgan_distill.cli import main
from nerfgan_distill.distill import (CachedSource, DataError, DatasetPoses, LabelPoses, OrbitPoses, RealImages,
                                     SampleSpec, TeacherSource, derive_seed, split)
from nerfgan_distill.distill import cache as cache_module


def tiny_teacher(seed=0, resolution=None):
    kw, r = teacher.tiny_config()
    G = teacher.TriPlaneGenerator(**kw)
    G.load_state_dict(teacher.random_state(G, seed))
    G.neural_rendering_resolution = resolution or r
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G():
    return tiny_teacher()


@pytest.fixture(scope="module")
def teacher_file(G, tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    teacher.save(G, path)
    return path


def orbit_of(c):
    """(yaw, pitch, distance from the origin) of EG3D orbit cameras c [n, 25]: the inverse of
    OrbitPoses.cameras (origin = r (sin(phi) sin(yaw), cos(phi), sin(phi) cos(yaw)), v = pi (1 - cos(phi)) / 2)."""
    origin = c[:, :16].reshape(-1, 4, 4)[:, :3, 3].double()
    radius = origin.norm(dim=1)
    yaw = torch.atan2(origin[:, 0], origin[:, 2])
    pitch = -math.pi / 2 * origin[:, 1] / radius
    return yaw, pitch, radius


def labels_for(n, seed=0):
    """n plausible EG3D labels: orbit cameras around a face-like pivot."""
    poses = OrbitPoses(radius=2.7, pivot=(0, 0, 0.2), focal=4.2647)
    return poses.sample(torch.Generator().manual_seed(seed), n)


def write_dataset(folder, n=5, labels="ok", size=8, as_zip=False):
    """An EG3D dataset of n solid-colour PNGs (colour i*40) and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"img{i:05d}.png" for i in range(n)]
    files = {}
    for i, name in enumerate(names):
        path = folder / name
        Image.new("RGB", (size, size), (40 * i, 255 - 40 * i, 7)).save(path)
        files[name] = path.read_bytes()
    values = labels_for(n).tolist()
    if labels == "ok":
        meta = {"labels": [[name, v] for name, v in zip(names, values)]}
    elif labels == "null":
        meta = {"labels": None}
    elif labels in ("absent", "no-json"):
        meta = {}
    elif labels == "short":
        meta = {"labels": [[name, v[:16]] for name, v in zip(names, values)]}
    elif labels == "nan":
        values[2][3] = float("nan")
        meta = {"labels": [[name, v] for name, v in zip(names, values)]}
    text = json.dumps(meta)
    if labels != "no-json":
        (folder / "dataset.json").write_text(text)
    if not as_zip:
        return folder, names, torch.tensor(values)
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        if labels != "no-json":
            z.writestr("dataset.json", text)
    return archive, names, torch.tensor(values)


# --- determinism ---------------------------------------------------------------------------

def test_derived_seeds_depend_on_every_part():
    base = derive_seed(3, 10, "z")
    assert base == derive_seed(3, 10, "z")
    assert len({base, derive_seed(4, 10, "z"), derive_seed(3, 11, "z"), derive_seed(3, 10, "render-pose")}) == 4
    with pytest.raises(ValueError):
        derive_seed(-1, 0, "z")


def test_sample_draws_do_not_depend_on_chunks_ranks_or_resume():
    poses = OrbitPoses(radius=2.7, pivot=(0, 0, 0.2), focal=4.2647)
    spec = SampleSpec(5, poses, z_dim=16)
    whole = spec.draw(range(24))
    chunks = [spec.draw(range(a, b)) for a, b in ((0, 7), (7, 8), (8, 24))]
    for key in whole:
        assert torch.equal(whole[key], torch.cat([c[key] for c in chunks]))
    # Two "ranks", each taking every other sample of a global batch of 8, for 3 steps.
    for rank in range(2):
        numbers = [step * 8 + i for step in range(3) for i in range(rank, 8, 2)]
        part = spec.draw(numbers)
        for key in whole:
            assert torch.equal(part[key], whole[key][numbers])
    # A resumed run (a new spec object, starting at step 2) re-draws the same samples.
    resumed = SampleSpec(5, poses, z_dim=16).draw(range(16, 24))
    assert all(torch.equal(resumed[k], whole[k][16:]) for k in whole)
    other = SampleSpec(6, poses, z_dim=16).draw(range(24))
    assert not torch.equal(other["z"], whole["z"]) and not torch.equal(other["c"], whole["c"])
    assert not torch.equal(whole["z"][0], whole["z"][1])


def test_cond_pose_choices_leave_the_other_draws_alone():
    poses = OrbitPoses(radius=2.7, pivot=(0, 0, 0.2), focal=4.2647)
    draws = {mode: SampleSpec(1, poses, cond_pose=mode, z_dim=8).draw(range(6)) for mode in ("random", "render",
                                                                                            "frontal")}
    for mode in ("render", "frontal"):
        assert torch.equal(draws[mode]["z"], draws["random"]["z"])
        assert torch.equal(draws[mode]["c"], draws["random"]["c"])
    assert torch.equal(draws["render"]["c_cond"], draws["render"]["c"])
    assert torch.equal(draws["frontal"]["c_cond"], poses.frontal().expand(6, 25))
    assert not torch.equal(draws["random"]["c_cond"], draws["random"]["c"])
    with pytest.raises(ValueError, match="frontal_c"):
        SampleSpec(1, LabelPoses(labels_for(3)), cond_pose="frontal")
    with pytest.raises(ValueError, match="cond_pose"):
        SampleSpec(1, poses, cond_pose="side")


# --- orbit poses -----------------------------------------------------------------------------

@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_orbit_cameras_stay_in_range_and_look_at_the_pivot(distribution):
    poses = OrbitPoses(radius=2.7, pivot=(0.0, 0.05, 0.2), focal=4.2647, distribution=distribution,
                       yaw_range=(-0.6, 0.4), pitch_range=(-0.3, 0.2), yaw_std=0.3, pitch_std=0.15)
    c = poses.sample(torch.Generator().manual_seed(0), 4000)
    assert c.shape == (4000, 25) and c.dtype == torch.float32
    yaw, pitch, radius = orbit_of(c)
    assert torch.allclose(radius, torch.full_like(radius, 2.7), atol=1e-5)
    assert yaw.min() >= -0.6 - 1e-5 and yaw.max() <= 0.4 + 1e-5
    assert pitch.min() >= -0.3 - 1e-5 and pitch.max() <= 0.2 + 1e-5
    pose = c[:, :16].reshape(-1, 4, 4).double()
    to_pivot = torch.tensor([0.0, 0.05, 0.2], dtype=torch.float64) - pose[:, :3, 3]
    forward = pose[:, :3, 2]  # OpenCV: the camera looks along its +z column
    assert torch.allclose(forward, to_pivot / to_pivot.norm(dim=1, keepdim=True), atol=1e-5)
    assert torch.allclose(c[:, 16:], cameras.focal_to_intrinsics(4.2647).reshape(1, 9).expand(4000, 9))
    if distribution == "uniform":  # fills its ranges
        assert yaw.min() < -0.58 and yaw.max() > 0.38 and abs(yaw.mean() + 0.1) < 0.02
    else:  # normals truncated to the ranges: their mean is the truncated normal's, std below the untruncated
        for values, (lo, hi), std in ((yaw, (-0.6, 0.4), 0.3), (pitch, (-0.3, 0.2), 0.15)):
            a, b = lo / std, hi / std
            pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
            cdf = lambda x: (1 + math.erf(x / math.sqrt(2))) / 2  # noqa: E731
            mean = std * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))
            assert abs(float(values.mean()) - mean) < 0.01 and 0.6 * std < float(values.std()) < std
            assert values.min() < lo + 0.05 and values.max() > hi - 0.05


def test_orbit_defaults_come_from_the_teacher(G):
    poses = OrbitPoses.for_teacher(G)
    camera = G.camera_defaults()
    assert (poses.radius, poses.pivot, poses.focal) == (camera.radius, camera.pivot, camera.focal)
    assert poses.distribution == "gaussian"
    assert poses.yaw_range[0] <= -0.5 and poses.yaw_range[1] >= 0.5
    assert poses.pitch_range[0] <= -0.25 and poses.pitch_range[1] >= 0.25
    assert OrbitPoses.for_teacher(G, distribution="uniform").distribution == "uniform"
    objects = tiny_teacher()
    objects.rendering_kwargs["white_back"] = True
    poses = OrbitPoses.for_teacher(objects)
    assert poses.distribution == "uniform" and poses.yaw_range == (-math.pi, math.pi)
    stored = tiny_teacher()
    stored.rendering_kwargs["pose_distribution"] = {"yaw_range": [-1.0, 1.0], "pitch_range": [-0.1, 0.3]}
    poses = OrbitPoses.for_teacher(stored)
    assert poses.yaw_range == (-1.0, 1.0) and poses.pitch_range == (-0.1, 0.3)
    stored.rendering_kwargs["pose_distribution"] = {"yaw_span": 1}
    with pytest.raises(ValueError, match="pose_distribution"):
        OrbitPoses.for_teacher(stored)
    with pytest.raises(ValueError, match="yaw_range"):
        OrbitPoses(radius=2.7, pivot=(0, 0, 0), focal=4.0, yaw_range=(0.5, -0.5))


def test_eval_grid_spans_the_full_range():
    poses = OrbitPoses(radius=2.7, pivot=(0, 0, 0.2), focal=4.2647, yaw_range=(-0.7, 0.7), pitch_range=(-0.35, 0.35))
    c = poses.eval_poses(5, 3)
    yaw, pitch, _ = orbit_of(c)
    assert c.shape == (15, 25)
    assert torch.allclose(yaw.reshape(3, 5), torch.linspace(-0.7, 0.7, 5, dtype=torch.float64).expand(3, 5),
                          atol=1e-5)
    assert torch.allclose(pitch.reshape(3, 5)[:, 0], torch.tensor([-0.35, 0.0, 0.35], dtype=torch.float64),
                          atol=1e-5)
    assert torch.allclose(poses.frontal(), poses.eval_poses(1, 1))
    with pytest.raises(TypeError, match="eval_poses"):
        split(poses, 0.1, 0)


# --- EG3D datasets ---------------------------------------------------------------------------

@pytest.mark.parametrize("as_zip", [False, True])
def test_dataset_poses_from_a_folder_or_a_zip(tmp_path, as_zip):
    path, _, labels = write_dataset(tmp_path / "data", n=6, as_zip=as_zip)
    poses = DatasetPoses(path)
    assert len(poses) == 6 and torch.equal(poses.labels, labels.float())
    drawn = poses.sample(torch.Generator().manual_seed(1), 50)
    matches = (drawn[:, None, :] == labels[None].float()).all(dim=2)
    assert bool(matches.any(dim=1).all()) and len(set(matches.float().argmax(1).tolist())) > 1


@pytest.mark.parametrize("case, message", [("missing", "no such dataset"), ("no-json", "no dataset.json"),
                                           ("null", "has no camera labels"), ("absent", "has no camera labels"),
                                           ("short", "has 16 values, expected 25"), ("nan", "NaN or infinite")])
@pytest.mark.parametrize("as_zip", [False, True])
def test_dataset_errors_name_the_problem(tmp_path, case, message, as_zip):
    if case == "missing":
        path = tmp_path / ("nothing.zip" if as_zip else "nothing")
    else:
        path, _, _ = write_dataset(tmp_path / "data", n=4, labels=case, as_zip=as_zip)
    with pytest.raises(DataError, match=message) as error:
        DatasetPoses(path)
    assert str(path) in str(error.value)
    if case == "null":
        assert "dataset_tool" in str(error.value)


def test_holdout_split_is_deterministic_and_disjoint():
    poses = LabelPoses(labels_for(20))
    train, held = split(poses, 0.25, seed=3)
    again_train, again_held = split(poses, 0.25, seed=3)
    assert torch.equal(held.labels, again_held.labels) and torch.equal(train.labels, again_train.labels)
    assert len(held) == 5 and len(train) == 15
    combined = torch.cat([train.labels, held.labels])
    assert torch.equal(combined[combined[:, 3].argsort()], poses.labels[poses.labels[:, 3].argsort()])
    assert not torch.equal(split(poses, 0.25, seed=4)[1].labels, held.labels)
    with pytest.raises(ValueError, match="holdout_fraction"):
        split(poses, 1.5, 0)


@pytest.mark.parametrize("as_zip", [False, True])
def test_real_images_are_resized_scaled_and_paired_with_their_labels(tmp_path, as_zip):
    path, names, labels = write_dataset(tmp_path / "data", n=5, size=8, as_zip=as_zip)
    real = RealImages(path, resolution=4, seed=2)
    out = real.batch(range(10))
    assert out["image"].shape == (10, 3, 4, 4) and out["c"].shape == (10, 25)
    assert sorted(out["index"][:5].tolist()) == list(range(5))  # every image once per epoch
    for image, c, i in zip(out["image"], out["c"], out["index"].tolist()):
        colour = torch.tensor([40 * i, 255 - 40 * i, 7]) / 127.5 - 1
        assert torch.allclose(image, colour[:, None, None].expand(3, 4, 4), atol=1e-6)
        assert torch.equal(c, labels[i].float())
    split_batches = [real.batch(range(0, 3)), RealImages(path, 4, seed=2).batch(range(3, 10))]
    assert torch.equal(torch.cat([b["image"] for b in split_batches]), out["image"])
    assert not torch.equal(RealImages(path, 4, seed=3).batch(range(10))["index"], out["index"])


def test_real_images_need_every_labelled_file(tmp_path):
    path, names, _ = write_dataset(tmp_path / "data", n=3)
    (path / names[1]).unlink()
    with pytest.raises(DataError, match=names[1]):
        RealImages(path, 4, seed=0)


# --- teacher sources -------------------------------------------------------------------------

def test_teacher_source_renders_the_spec_with_the_teacher(G):
    spec = SampleSpec(7, OrbitPoses.for_teacher(G), truncation_psi=0.7, z_dim=G.z_dim)
    out = TeacherSource(G, spec).batch([3, 9, 4])
    assert out["ws"].shape == (3, G.backbone.num_ws, G.w_dim)
    assert out["image"].shape == (3, 3, 32, 32) and out["image_raw"].shape == (3, 3, 16, 16)
    assert out["feature_image"].shape == (3, G.plane_channels, 16, 16) and out["c"].shape == (3, 25)
    assert all(out[k].dtype == torch.float32 for k in ("ws", "image", "image_raw", "feature_image"))
    draws = spec.draw([3, 9, 4])
    with torch.no_grad():
        ws = G.mapping(draws["z"], draws["c_cond"], truncation_psi=0.7)
        direct = G.synthesis(ws, draws["c"], noise_mode="const", deterministic=True)
    assert torch.equal(out["ws"], ws)
    for key in ("image", "image_raw", "feature_image"):
        assert torch.equal(out[key], direct[key])
    with pytest.raises(ValueError, match="z_dim"):
        TeacherSource(G, SampleSpec(7, OrbitPoses.for_teacher(G), z_dim=G.z_dim + 1))


# --- generate and the cache --------------------------------------------------------------------

def generate_args(teacher_file, out, *extra, count=6):
    return ["generate", "--teacher", str(teacher_file), "--out", str(out), "--count", str(count), "--shard-size", "4",
            "--batch", "3", "--device", "cpu", "--quiet", *extra]


def folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def reference_cache(teacher_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "reference"
    assert main(generate_args(teacher_file, out)) == 0
    return out


def test_generate_writes_shards_and_a_manifest(reference_cache, G):
    files = folder_bytes(reference_cache)
    assert sorted(files) == ["manifest.json", "shard-00000.safetensors", "shard-00001.safetensors"]
    manifest = json.loads(files["manifest.json"])
    identity = manifest["identity"]
    assert identity["count"] == 6 and identity["shard_size"] == 4 and identity["dtype"] == "float16"
    assert identity["samples"]["seed"] == 0 and identity["samples"]["poses"]["kind"] == "orbit"
    assert identity["teacher"]["neural_rendering_resolution"] == 16 and identity["teacher"]["img_resolution"] == 32
    assert identity["teacher"]["feature_channels"] == G.plane_channels and len(identity["teacher"]["sha256"]) == 64
    from nerfgan_distill.formats import read_model_file

    shard = read_model_file(reference_cache / "shard-00001.safetensors", expect="nerfgan_distill.shard")
    assert shard.tensors["index"].tolist() == [4, 5]
    assert shard.tensors["image"].dtype == torch.float16 and shard.tensors["ws"].dtype == torch.float32


def test_an_interrupted_generate_resumes_to_the_same_bytes(reference_cache, teacher_file, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    original = cache_module._write_shard
    calls = []

    def write_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "_write_shard", write_then_stop)
    assert main(generate_args(teacher_file, out)) == 130
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000.safetensors"]
    monkeypatch.setattr(cache_module, "_write_shard", original)
    assert main(generate_args(teacher_file, out)) == 0
    assert folder_bytes(out) == folder_bytes(reference_cache)
    # A lost manifest and a damaged shard are redone; the complete shard is kept.
    (out / "manifest.json").unlink()
    (out / "shard-00001.safetensors").write_bytes(b"\0" * 100)
    kept = (out / "shard-00000.safetensors").stat().st_mtime_ns
    assert main(generate_args(teacher_file, out)) == 0
    assert folder_bytes(out) == folder_bytes(reference_cache)
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == kept


def test_two_ranks_write_the_same_cache_as_one_process(reference_cache, teacher_file, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(generate_args(teacher_file, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["shard-00001.safetensors"]  # no manifest yet
    monkeypatch.setenv("RANK", "0")
    assert main(generate_args(teacher_file, out)) == 0
    assert folder_bytes(out) == folder_bytes(reference_cache)


@pytest.mark.parametrize("extra", [["--seed", "1"], ["--dtype", "float32"], ["--truncation", "0.5"]])
def test_generate_refuses_other_arguments_into_the_same_folder(reference_cache, teacher_file, extra, capsys):
    before = folder_bytes(reference_cache)
    capsys.readouterr()
    assert main(generate_args(teacher_file, reference_cache, *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other arguments" in err and "Traceback" not in err
    assert folder_bytes(reference_cache) == before


def test_generate_refuses_a_partial_cache_of_other_arguments(teacher_file, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(generate_args(teacher_file, out, count=4)) == 0
    (out / "manifest.json").unlink()
    before = folder_bytes(out)
    assert main(generate_args(teacher_file, out, count=5)) == 2
    assert "count" in capsys.readouterr().err
    assert folder_bytes(out) == before


def test_generate_user_errors_are_one_line(teacher_file, reference_cache, tmp_path, capsys):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    unlabelled, _, _ = write_dataset(tmp_path / "unlabelled", n=2, labels="null")
    cases = [
        (generate_args(tmp_path / "missing.safetensors", tmp_path / "a"), "missing.safetensors"),
        (generate_args(reference_cache / "shard-00000.safetensors", tmp_path / "b"), "not a nerfgan_distill teacher"),
        (generate_args(teacher_file, tmp_path / "c", count=0), "--count must be >= 1"),
        (generate_args(teacher_file, tmp_path / "d", "--dataset", str(unlabelled)), "no camera labels"),
        (generate_args(teacher_file, foreign), "holiday.jpg"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "c").exists() and sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_generate_from_dataset_labels_uses_them(teacher_file, tmp_path):
    data, _, labels = write_dataset(tmp_path / "data", n=3)
    out = tmp_path / "cache"
    assert main(generate_args(teacher_file, out, "--dataset", str(data), count=4)) == 0
    cached = CachedSource(out, seed=0).items(range(4))
    assert ((cached["c"][:, None] == labels[None].float()).all(dim=2).any(dim=1)).all()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cached_source_matches_the_teacher_source(G, teacher_file, tmp_path, dtype):
    out = tmp_path / "cache"
    assert main(generate_args(teacher_file, out, "--dtype", dtype, "--truncation", "0.8")) == 0
    cached = CachedSource(out, seed=11, teacher=G)
    live = TeacherSource(G, SampleSpec(0, OrbitPoses.for_teacher(G), truncation_psi=0.8, z_dim=G.z_dim))
    for batch in (range(0, 3), range(3, 4), range(4, 6)):  # generate's batches: shards of 4, batches of 3
        want, got = live.batch(batch), cached.items(batch)
        for key in ("index", "z", "c", "c_cond", "ws"):
            assert torch.equal(got[key], want[key]), key
        for key in ("image", "image_raw", "feature_image"):
            assert got[key].dtype == torch.float32
            if dtype == "float32":
                assert torch.equal(got[key], want[key]), key
            else:
                assert torch.equal(got[key], want[key].half().float()), key
    # Training samples walk the items in a per-epoch permutation fixed by the seed.
    samples = cached.batch(range(12))
    assert sorted(samples["index"][:6].tolist()) == list(range(6)) == sorted(samples["index"][6:].tolist())
    parts = [CachedSource(out, seed=11).batch(r) for r in (range(0, 5), range(5, 12))]
    assert torch.equal(torch.cat([p["image"] for p in parts]), samples["image"])
    assert not torch.equal(CachedSource(out, seed=12).batch(range(12))["index"], samples["index"])


def test_cached_source_checks_the_teacher(reference_cache):
    with pytest.raises(DataError, match="another teacher"):
        CachedSource(reference_cache, seed=0, teacher=tiny_teacher(seed=1))
    with pytest.raises(DataError, match="neural_rendering_resolution"):
        CachedSource(reference_cache, seed=0, teacher=tiny_teacher(resolution=8))
    with pytest.raises(DataError, match="no manifest.json"):
        CachedSource(reference_cache.parent, seed=0)
