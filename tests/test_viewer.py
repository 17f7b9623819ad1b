"""The browser viewer's protocol, frames and server (nerfgan_distill.viewer), through starlette's
test client; the page in a real browser is tests/test_viewer_browser.py."""
import json
import math
import threading

import pytest
import torch

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from nerfgan_distill import student, teacher  # noqa: E402
from nerfgan_distill.viewer import FrameRenderer, Limits, ProtocolError, View, create_app, parse_message  # noqa: E402
from nerfgan_distill.viewer.protocol import MAX_MESSAGE_CHARS, MAX_SEED  # noqa: E402
from nerfgan_distill.viewer.server import LatestRequest  # noqa: E402
from nerfgan_distill.view_cli import exposure_warning  # noqa: E402

LIMITS = Limits(num_ws=10)


@pytest.fixture(scope="module")
def models():
    G = teacher.bundled()
    S = student.build("tiny", teacher=G, seed=3).eval()
    return G, S


@pytest.fixture(scope="module")
def renderer(models):
    return FrameRenderer(*models)


def render(**fields):
    return json.dumps({"type": "render", **fields})


# ----------------------------------------------------------------------------- protocol

def test_defaults_and_fields_parse():
    request = parse_message(render(id=5, seed=12, psi=0.5, yaw=0.2, pitch=-0.1, zoom=1.5, mix_seed=3, mix_layer=4,
                                   interp_seed=9, interp_t=0.25, depth=False), LIMITS)
    assert request["id"] == 5 and request["clamped"] == []
    assert request["view"] == View(seed=12, psi=0.5, yaw=0.2, pitch=-0.1, zoom=1.5, mix_seed=3, mix_layer=4,
                                   interp_seed=9, interp_t=0.25, depth=False)
    assert parse_message(render(), LIMITS)["view"] == View()
    assert parse_message('{"type": "info"}', LIMITS) == {"type": "info"}


@pytest.mark.parametrize("field, value, clamped_to", [
    ("yaw", 10.0, math.pi / 2), ("yaw", -10.0, -math.pi / 2), ("pitch", 3.0, math.pi / 3), ("zoom", 0.0, 0.5),
    ("zoom", 100.0, 3.0), ("psi", 7.0, 2.0), ("psi", -3.0, -1.0), ("seed", -4, 0), ("seed", 2**40, MAX_SEED),
    ("mix_layer", 99, 10), ("mix_layer", -1, 0), ("interp_t", 1.5, 1.0), ("mix_seed", -1, 0), ("interp_seed", 2**33, MAX_SEED),
])
def test_out_of_range_numbers_are_clamped_and_named(field, value, clamped_to):
    request = parse_message(render(**{field: value}), LIMITS)
    assert getattr(request["view"], field) == pytest.approx(clamped_to)
    assert request["clamped"] == [field]


@pytest.mark.parametrize("text, words", [
    ("not json", "not JSON"), ("[1, 2]", "JSON object"), ('"render"', "JSON object"), ('{"type": "fly"}', "type must be"),
    ("{}", "type must be"), (render(seed="7"), "seed must be a number"), (render(seed=1.5), "seed must be an integer"),
    (render(seed=True), "seed must be a number"), (render(yaw=None), "yaw must be a number"),
    (render(depth=1), "depth must be true or false"), (render(colour=1), "unknown field(s) 'colour'"),
    ('{"type": "render", "yaw": NaN}', "yaw must be finite"), ('{"type": "render", "zoom": Infinity}', "finite"),
    (render(id=-1), "id must be"), (render(id="a"), "id must be a number"), (render(psi=[1]), "psi must be a number"),
    ("x" * (MAX_MESSAGE_CHARS + 1), "too long"), (b"binary", "JSON text"), (None, "JSON text"),
])
def test_bad_messages_raise_protocol_errors(text, words):
    with pytest.raises(ProtocolError, match=None) as caught:
        parse_message(text, LIMITS)
    assert words in str(caught.value)


def test_protocol_error_keeps_a_valid_request_id():
    with pytest.raises(ProtocolError) as caught:
        parse_message(render(id=17, yaw="left"), LIMITS)
    assert caught.value.request_id == 17


# ----------------------------------------------------------------------------- frames

def _pixels(data_url):
    import base64
    import io

    import numpy as np
    from PIL import Image

    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_frame_has_every_panel_at_model_resolution(models, renderer):
    G, _ = models
    frame = renderer.render(View(seed=3))
    assert _pixels(frame["teacher"]["image"]).shape == (G.img_resolution, G.img_resolution, 3)
    assert _pixels(frame["teacher"]["depth"]).shape[:2] == (G.neural_rendering_resolution,) * 2
    assert _pixels(frame["student"]["image"]).shape == (G.img_resolution, G.img_resolution, 3)
    assert _pixels(frame["difference"]).shape == (G.img_resolution, G.img_resolution, 3)
    for name in ("teacher", "student"):
        speed = frame[name]["speed"]
        assert speed["ms"] > 0 and speed["images_per_s"] > 0
    assert math.isfinite(frame["psnr"])
    assert "depth" not in renderer.render(View(seed=3, depth=False))["teacher"]


def test_frames_follow_the_camera_and_latent(renderer):
    base = renderer.render(View(seed=3))["teacher"]["image"]
    assert renderer.render(View(seed=3))["teacher"]["image"] == base  # deterministic
    for changed in (View(seed=3, yaw=0.4), View(seed=3, pitch=0.2), View(seed=3, zoom=1.6), View(seed=4),
                    View(seed=3, psi=0.2)):
        assert renderer.render(changed)["teacher"]["image"] != base, changed


def test_interpolation_and_style_mixing_act_on_ws(renderer):
    ws3, ws8 = renderer.latents(View(seed=3)), renderer.latents(View(seed=8))
    assert torch.equal(renderer.latents(View(seed=3, interp_seed=8, interp_t=0.0)), ws3)
    torch.testing.assert_close(renderer.latents(View(seed=3, interp_seed=8, interp_t=1.0)), ws8)
    half = renderer.latents(View(seed=3, interp_seed=8, interp_t=0.5))
    torch.testing.assert_close(half, (ws3 + ws8) / 2)
    mixed = renderer.latents(View(seed=3, mix_seed=8, mix_layer=4))
    assert torch.equal(mixed[:, :4], ws3[:, :4]) and torch.equal(mixed[:, 4:], ws8[:, 4:])
    assert torch.equal(renderer.latents(View(seed=3, mix_seed=8, mix_layer=renderer.limits.num_ws)), ws3)
    assert torch.equal(renderer.latents(View(seed=3)), ws3)  # mixing did not write into the cached ws


def test_teacher_alone_has_no_student_panels(models):
    frame = FrameRenderer(models[0]).render(View())
    assert set(frame) == {"teacher"} and {"image", "depth", "speed"} == set(frame["teacher"])
    assert FrameRenderer(models[0]).info()["has_student"] is False


def test_student_of_the_teacher_itself_renders_identically(models):
    """A 'student' that is the teacher's own synthesis: the difference panel is black and PSNR None."""
    G, _ = models

    class Same(torch.nn.Module):
        def forward(self, ws, c):
            return G.synthesis(ws, c, noise_mode="const", deterministic=True)

    frame = FrameRenderer(G, Same()).render(View(seed=5, yaw=0.2))
    assert frame["psnr"] is None
    assert _pixels(frame["difference"]).max() == 0


# ----------------------------------------------------------------------------- server

@pytest.fixture()
def client(renderer):
    with TestClient(create_app(renderer, max_clients=3)) as test_client:
        yield test_client


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "viewer.js" in page.text
    for name in ("viewer.js", "viewer.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # the page loads nothing from outside the server
    for text in (page.text, client.get("/static/viewer.js").text, client.get("/static/viewer.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    info = client.get("/api/info").json()
    assert info["has_student"] and info["num_ws"] == 10 and info["trained_range"]["yaw"] == [-0.55, 0.55]


def test_socket_session_good_and_bad_messages(client):
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "info"
        ws.send_json({"type": "render", "id": 1, "seed": 2, "yaw": 0.3})
        frame = ws.receive_json()
        assert frame["type"] == "frame" and frame["id"] == 1 and frame["view"]["yaw"] == 0.3 and frame["clamped"] == []
        for bad in ("{", "[]", json.dumps({"type": "render", "id": 2, "seed": "two"}), json.dumps({"type": 3})):
            ws.send_text(bad)
            reply = ws.receive_json()
            assert reply["type"] == "error" and reply["message"]
        ws.send_bytes(b"\x00\x01")
        assert "JSON text" in ws.receive_json()["message"]
        ws.send_json({"type": "render", "id": 3, "yaw": 9})
        frame = ws.receive_json()
        assert frame["type"] == "frame" and frame["clamped"] == ["yaw"] and frame["view"]["yaw"] == pytest.approx(math.pi / 2)
        ws.send_json({"type": "info"})
        assert ws.receive_json()["type"] == "info"


def test_error_reply_names_the_request(client):
    with client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_json({"type": "render", "id": 41, "pitch": "up"})
        reply = ws.receive_json()
        assert reply == {"type": "error", "id": 41, "message": reply["message"]} and "pitch" in reply["message"]


def test_several_connections_at_once_and_a_limit(client):
    with client.websocket_connect("/ws") as a, client.websocket_connect("/ws") as b, client.websocket_connect("/ws") as c:
        for ws in (a, b, c):
            assert ws.receive_json()["type"] == "info"
        for k, ws in enumerate((a, b, c)):
            ws.send_json({"type": "render", "id": 10 + k, "seed": k})
        for k, ws in enumerate((a, b, c)):
            frame = ws.receive_json()
            assert frame["id"] == 10 + k and frame["view"]["seed"] == k
        with client.websocket_connect("/ws") as extra:
            reply = extra.receive_json()
            assert reply["type"] == "error" and "at most 3" in reply["message"]
    with client.websocket_connect("/ws") as again:  # the closed ones freed their places
        assert again.receive_json()["type"] == "info"


class _GatedRenderer:
    """A renderer whose first frame waits for a signal, so requests pile up behind it."""

    def __init__(self, fail_on_seed=None):
        self.limits, self.release, self.rendered = LIMITS, threading.Event(), []
        self.fail_on_seed = fail_on_seed

    def info(self):
        return {"type": "info"}

    def render(self, view):
        if not self.rendered:
            self.release.wait(10)
        self.rendered.append(view.seed)
        if view.seed == self.fail_on_seed:
            raise RuntimeError("out of memory (pretend)")
        return {"teacher": {"image": "", "speed": {"ms": 1.0}}}


def test_stale_requests_are_dropped_not_queued():
    gated = _GatedRenderer()
    with TestClient(create_app(gated)) as test_client, test_client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_json({"type": "render", "id": 1, "seed": 1})
        for k in range(2, 7):  # while frame 1 renders, five more arrive: only the newest survives
            ws.send_json({"type": "render", "id": k, "seed": k})
        ws.send_json({"type": "info"})  # answered once the five were received
        assert ws.receive_json()["type"] == "info"
        gated.release.set()
        first, second = ws.receive_json(), ws.receive_json()
        assert (first["id"], second["id"]) == (1, 6)
        assert second["dropped"] == 4
        assert gated.rendered == [1, 6]


def test_a_failed_render_is_an_error_reply_and_the_server_goes_on():
    gated = _GatedRenderer(fail_on_seed=13)
    gated.release.set()
    with TestClient(create_app(gated)) as test_client, test_client.websocket_connect("/ws") as ws:
        ws.receive_json()
        ws.send_json({"type": "render", "id": 1, "seed": 13})
        reply = ws.receive_json()
        assert reply["type"] == "error" and reply["id"] == 1 and "out of memory" in reply["message"]
        ws.send_json({"type": "render", "id": 2, "seed": 14})
        assert ws.receive_json()["type"] == "frame"


def test_latest_request_mailbox():
    import asyncio

    async def scenario():
        box = LatestRequest()
        for k in range(4):
            box.put(k)
        assert await box.take() == (3, 3)
        waiter = asyncio.ensure_future(box.take())
        await asyncio.sleep(0)
        assert not waiter.done()
        box.put("x")
        assert await waiter == ("x", 0)

    asyncio.run(scenario())


def test_create_app_checks_max_clients(renderer):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_clients"):
            create_app(renderer, max_clients=bad)


# ----------------------------------------------------------------------------- the command

def test_exposure_warning_only_off_loopback():
    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    assert exposure_warning("::1") is None
    assert "beyond this machine" in exposure_warning("0.0.0.0")


def test_view_command_bad_input_is_one_line(tmp_path, capsys):
    from nerfgan_distill.cli import main

    assert main(["view", "--teacher", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    wrong = tmp_path / "not_a_student.safetensors"
    wrong.write_bytes(b"garbage")
    assert main(["view", "--student", str(wrong)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not_a_student" in err
    for argv in (["view", "--port", "70000"], ["view", "--port", "x"], ["view", "--max-clients", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_view_command_refuses_a_port_in_use(capsys):
    import socket

    from nerfgan_distill.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["view", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and err.count("\n") == 1


def test_view_command_refuses_a_student_of_another_teacher(tmp_path, capsys):
    from helpers import write_tiny_teacher

    from nerfgan_distill.cli import main

    other = teacher.load(write_tiny_teacher(tmp_path / "tiny.safetensors"))
    path = tmp_path / "student.safetensors"
    student.save(student.build("tiny", teacher=other), path)
    assert main(["view", "--student", str(path)]) == 2
    assert "made for another teacher" in capsys.readouterr().err
