"""The student generator: shapes, presets sized from the teacher, the mapping's per-w
design, save/load round trips and refusals, and backend parity."""
import pytest
import torch

from nerfgan_distill import cameras, student, teacher
from nerfgan_distill.networks import set_ops_backend


@pytest.fixture(scope="module")
def tiny_teacher():
    kwargs, resolution = teacher.tiny_config()
    G = teacher.TriPlaneGenerator(**kwargs)
    G.load_state_dict(teacher.random_state(G, seed=3))
    G.neural_rendering_resolution = resolution
    return G.eval().requires_grad_(False)


def _inputs(G, n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    c = cameras.frontal_camera(G.camera_defaults(), batch_size=n, yaw=torch.linspace(-0.4, 0.4, n))
    return G.mapping(z, c), c


@pytest.mark.parametrize("preset", ["tiny", "tiny-st3"])
def test_outputs_have_the_teachers_keys_and_shapes(tiny_teacher, preset):
    G = tiny_teacher
    ws, c = _inputs(G)
    S = student.build(preset, teacher=G)
    out, ref = S(ws, c), G.synthesis(ws, c, noise_mode="const")
    for key in ("image", "image_raw", "feature_image"):
        assert out[key].shape == ref[key].shape and out[key].dtype == torch.float32
        assert torch.isfinite(out[key]).all()
    assert torch.equal(out["image_raw"], out["feature_image"][:, :3])
    # mapping then synthesis is the forward pass.
    again = S.synthesis(S.mapping(ws, c))
    assert torch.equal(again["image"], out["image"])


def test_the_camera_and_each_w_change_the_output(tiny_teacher):
    G = tiny_teacher
    ws, c = _inputs(G)
    S = student.build("tiny", teacher=G)
    base = S.mapping(ws, c)
    moved = c.clone()
    moved[:, 3] += 0.3  # translate the camera
    assert not torch.allclose(S.mapping(ws, moved), base)
    # Style mixing carries over: changing the teacher's last w changes only the student
    # layers mapped to it.
    mixed = ws.clone()
    mixed[:, -1] = torch.randn_like(mixed[:, -1])
    out = S.mapping(mixed, c)
    changed = (out - base).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == (S.layer_map == G.backbone.num_ws - 1).tolist()
    assert changed[-1] and not changed[0]


def test_build_is_seeded_and_leaves_the_global_rng_alone(tiny_teacher):
    state = torch.random.get_rng_state()
    a = student.build("tiny", teacher=tiny_teacher, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = student.build("tiny", teacher=tiny_teacher, seed=5)
    c = student.build("tiny", teacher=tiny_teacher, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.fixture(scope="module")
def ffhq_teacher():
    kwargs, resolution = teacher.official_config("ffhq512-128")
    G = teacher.TriPlaneGenerator(**kwargs)
    G.neural_rendering_resolution = resolution
    return G


def test_every_preset_matches_an_official_teachers_shapes(ffhq_teacher):
    G = ffhq_teacher
    counts = {}
    for preset in student.PRESETS:
        S = student.build(preset, teacher=G)
        assert (S.raw_resolution, S.img_resolution, S.feature_channels, S.w_dim) == (128, 512, 32, 512), preset
        assert S.teacher_num_ws == G.backbone.num_ws == 14
        counts[preset] = sum(t.numel() for t in S.parameters())
    assert type(student.build("eg3d-512", teacher=G).superresolution) is type(G.superresolution)
    assert counts["eg3d-512-fast"] * 2 < counts["eg3d-512"]
    assert counts["tiny"] < counts["demo"] < counts["eg3d-512"]
    st3 = student.build("eg3d-512-st3", teacher=G)
    assert st3.backbone == "stylegan3" and type(st3.superresolution) is type(G.superresolution)
    assert len(st3.synthesis_network.layer_names) == 15  # StyleGAN3 config T


def test_every_preset_has_a_discriminator_and_a_known_backbone():
    from nerfgan_distill.distill.config import DISCRIMINATOR_PRESETS
    from nerfgan_distill.student.generator import BACKBONES

    assert set(DISCRIMINATOR_PRESETS) == set(student.PRESETS)
    assert {p.get("backbone", "stylegan2") for p in student.PRESETS.values()} <= set(BACKBONES)
    with pytest.raises(ValueError, match="backbone must be one of stylegan2, stylegan3"):
        student.StudentGenerator(w_dim=8, teacher_num_ws=4, raw_resolution=16, feature_channels=8,
                                 img_resolution=32, superresolution_module="x", backbone="stylegan4")


def test_sr_init_from_the_teacher_copies_its_weights():
    kwargs, resolution = teacher.official_config("shapenetcars128-64")
    kwargs.update(channel_base=1024, channel_max=32)
    G = teacher.TriPlaneGenerator(**kwargs)
    G.load_state_dict(teacher.random_state(G, seed=1))
    G.neural_rendering_resolution = 16
    S = student.build("eg3d-512", teacher=G, sr_init="teacher",
                      synthesis_kwargs={"channel_base": 256, "channel_max": 16, "num_fp16_res": 0})
    theirs = G.superresolution.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in S.superresolution.state_dict().items())
    with pytest.raises(ValueError, match="sr_init='teacher' needs the teacher's SR"):
        student.build("tiny", teacher=G, sr_init="teacher")
    with pytest.raises(ValueError, match="sr_init must be"):
        student.build("tiny", teacher=G, sr_init="copy")


@pytest.mark.parametrize("preset", ["tiny", "tiny-st3"])
def test_save_load_round_trip(tiny_teacher, tmp_path, preset):
    G = tiny_teacher
    # eval, as load returns it: the layers are inference_only (the training-mode forward rounds differently).
    S = student.build(preset, teacher=G, seed=2).eval()
    if preset == "tiny-st3":  # running statistics travel with the weights
        ws, c = _inputs(G)
        S(ws, c, update_emas=True)
        assert S.backbone == "stylegan3" and all(float(b) != 1 for b in S.running_statistics())
    path = tmp_path / "s.safetensors"
    student.save(S, path)
    loaded = student.load(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    ws, c = _inputs(G)
    with torch.no_grad():
        a, b = S(ws, c), loaded(ws, c)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.init_kwargs == S.init_kwargs
    # The same content gives the same bytes.
    again = tmp_path / "again.safetensors"
    student.save(loaded, again)
    assert again.read_bytes() == path.read_bytes()


def test_teacher_and_student_files_are_not_confused(tiny_teacher, tmp_path):
    teacher_path, student_path = tmp_path / "t.safetensors", tmp_path / "s.safetensors"
    teacher.save(tiny_teacher, teacher_path)
    student.save(student.build("tiny", teacher=tiny_teacher), student_path)
    with pytest.raises(student.StudentFormatError, match="is a nerfgan_distill teacher file, not a nerfgan_distill "
                                                         "student file"):
        student.load(teacher_path)
    with pytest.raises(teacher.TeacherFormatError, match="is a nerfgan_distill student file, not a nerfgan_distill "
                                                         "teacher file"):
        teacher.load(student_path)
    zip_file = tmp_path / "z.pt"
    torch.save({"a": torch.zeros(1)}, zip_file)
    with pytest.raises(student.StudentFormatError, match="not a .safetensors file"):
        student.load(zip_file)
    with pytest.raises(TypeError, match="must be a StudentGenerator"):
        student.save(tiny_teacher, tmp_path / "x.safetensors")


def test_bad_inputs_name_the_argument(tiny_teacher):
    G = tiny_teacher
    ws, c = _inputs(G)
    S = student.build("tiny", teacher=G)
    with pytest.raises(ValueError, match=r"ws must be the teacher's \[N, 8, 64\]"):
        S(ws[:, :3], c)
    with pytest.raises(ValueError, match=r"c must be \[3, 25\]"):
        S(ws, c[:2])
    with pytest.raises(ValueError, match="c has non-finite values"):
        S(ws, torch.full_like(c, float("nan")))
    with pytest.raises(ValueError, match="unknown student preset"):
        student.build("huge", teacher=G)
    with pytest.raises(ValueError, match="unknown option"):
        student.build("tiny", teacher=G, widths=3)


def test_our_ops_match_the_torch_reference_forward_and_backward(tiny_teacher):
    G = tiny_teacher
    ws, c = _inputs(G)
    fast = student.build("tiny", teacher=G, seed=1)
    ref = set_ops_backend(student.build("tiny", teacher=G, seed=1), "torch")
    out_fast, out_ref = fast(ws, c), ref(ws, c)
    for key in out_fast:
        torch.testing.assert_close(out_fast[key], out_ref[key], rtol=1e-4, atol=1e-4)
    loss_fast = sum(v.square().mean() for v in out_fast.values())
    loss_ref = sum(v.square().mean() for v in out_ref.values())
    loss_fast.backward()
    loss_ref.backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_package_level_load_and_save_take_either_model(tiny_teacher, tmp_path):
    import nerfgan_distill

    S = student.build("tiny", teacher=tiny_teacher)
    nerfgan_distill.save(S, tmp_path / "s.safetensors")
    nerfgan_distill.save(tiny_teacher, tmp_path / "t.safetensors")
    assert isinstance(nerfgan_distill.load(tmp_path / "s.safetensors"), student.StudentGenerator)
    assert isinstance(nerfgan_distill.load(tmp_path / "t.safetensors"), teacher.TriPlaneGenerator)
    with pytest.raises(TypeError, match="TriPlaneGenerator or a StudentGenerator"):
        nerfgan_distill.save(torch.nn.Linear(1, 1), tmp_path / "x.safetensors")


def test_a_student_file_with_other_tensors_is_refused(tiny_teacher, tmp_path):
    from nerfgan_distill.formats import write_model_file

    S = student.build("tiny", teacher=tiny_teacher)
    state = dict(S.state_dict())
    name = next(iter(state))
    state[name] = torch.zeros(3)
    path = tmp_path / "bad.safetensors"
    write_model_file(path, "nerfgan_distill.student", "1", {"init_kwargs": S.init_kwargs}, state)
    with pytest.raises(student.StudentFormatError, match=f"{name} has shape \\[3\\]"):
        student.load(path)
    del state[name]
    write_model_file(path, "nerfgan_distill.student", "1", {"init_kwargs": S.init_kwargs}, state)
    with pytest.raises(student.StudentFormatError, match=f"missing: {name}"):
        student.load(path)


def test_a_safetensors_header_length_that_looks_like_a_pickle_is_still_safetensors(tiny_teacher, tmp_path):
    # The file starts with its header length (little endian): 0x80 0x02 ... looks like pickle
    # protocol 3. Pad the student's config until its header length is 0x0380 + 65536 k.
    import struct

    import nerfgan_distill

    S = student.build("tiny", teacher=tiny_teacher)
    path = tmp_path / "s.safetensors"
    student.save(S, path)
    length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    target = length + (0x0380 - length) % 0x10000  # the header length's first bytes: 80 03
    for pad in range(target - length - 16, target - length + 17):  # the header is padded to 8 bytes
        S.init_kwargs["preset"] = "tiny" + " " * pad
        student.save(S, path)
        head = path.read_bytes()[:2]
        if head[0] == 0x80 and 2 <= head[1] <= 5:
            break
    else:
        pytest.fail("no padding gave a pickle-like header length")
    assert isinstance(nerfgan_distill.load(path), student.StudentGenerator)
    with pytest.raises(teacher.TeacherFormatError, match="student file"):
        teacher.load(path)
