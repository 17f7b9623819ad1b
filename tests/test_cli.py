"""The nerfgan-distill command and the benchmark harness, run as a user would."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    exe = shutil.which("nerfgan-distill")
    assert exe, "the nerfgan-distill console script is not installed"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_info_lists_every_backend():
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    for name in ("cuda", "triton", "cpu", "torch"):
        assert f"\n{name} " in result.stdout
    data = json.loads(run_cli("info", "--json").stdout)
    assert data["backends"]["cpu"]["usable"] is True
    assert set(data["backends"]) == {"cuda", "triton", "cpu", "torch"}


def test_bench_writes_json_with_references_and_speedups(tmp_path):
    result = run_cli("bench", "--quick", "--device", "cpu", "--repeats", "2", "--warmup", "1",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.glob("bias_act-cpu-*.json")
    data = json.loads(path.read_text())
    meta = data["meta"]
    for key in ("device", "torch", "triton", "python", "nerfgan_distill", "native_build", "commit", "timestamp"):
        assert key in meta
    rows = data["rows"]
    assert {r["provider"] for r in rows} == {"cpu", "torch", "torch.compile"}
    assert {r["pass"] for r in rows} == {"forward", "forward+backward"}
    for row in rows:
        assert row["median_ms"] > 0 and row["gbps"] > 0 and row["repeats"] == 2
        assert row["p20_ms"] <= row["median_ms"] <= row["p80_ms"]
        assert row["ms_per_image"] == pytest.approx(row["median_ms"] / row["shape"][0], abs=1e-5)
        if row["provider"] == "torch":
            assert row["speedup_vs_torch"] == 1.0

    # A suite with more references than the eager and compiled one (StyleGAN2's two paths):
    # every one is timed, and the fastest of them is the best-reference baseline.
    (path,) = tmp_path.glob("modulated_conv2d-cpu-*.json")
    rows = json.loads(path.read_text())["rows"]
    references = {"torch", "torch.compile", "torch.nonfused", "torch.nonfused.compile"}
    assert {r["provider"] for r in rows} == {"cpu"} | references
    for pass_name in ("forward", "forward+backward"):
        group = [r for r in rows if r["pass"] == pass_name]
        assert all(r["tflops"] > 0 for r in group)
        fastest = min((r for r in group if r["provider"] in references), key=lambda r: r["median_ms"])
        assert fastest["speedup_vs_best_reference"] == 1.0
        assert all(r["speedup_vs_best_reference"] <= 1.0 for r in group if r["provider"] in references)
        for name in ("torch.nonfused", "torch.nonfused.compile"):  # a column per further reference
            assert all(r[f"speedup_vs_{name}"] == 1.0 for r in group if r["provider"] == name)

    # The renderer's rows say how far they are from the H100 roofline estimate (perf.md).
    (path,) = tmp_path.glob("render_triplanes-cpu-*.json")
    for row in json.loads(path.read_text())["rows"]:
        assert row["h100_roofline_ms"] > 0
        assert row["times_h100_roofline"] == pytest.approx(row["median_ms"] / row["h100_roofline_ms"], rel=1e-2)


def test_bench_batch_picks_the_shapes_of_that_batch(tmp_path):
    result = run_cli("bench", "--quick", "--device", "cpu", "--repeats", "1", "--warmup", "0", "--op", "bias_act",
                     "--op", "render_triplanes", "--batch", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "render_triplanes: no shape of batch 2, skipped" in result.stdout
    assert not list(tmp_path.glob("render_triplanes-*.json"))
    (path,) = tmp_path.glob("bias_act-cpu-*.json")
    assert {r["shape"][0] for r in json.loads(path.read_text())["rows"]} == {2}


def test_bench_rejects_bad_arguments(tmp_path):
    result = run_cli("bench", "--quick", "--repeats", "0", "--out", str(tmp_path))
    assert result.returncode != 0 and "--repeats: must be >= 1, got 0" in result.stderr
    result = run_cli("bench", "--op", "nope")
    assert result.returncode != 0 and "invalid choice" in result.stderr


@pytest.mark.skipif(not (REPO / "benchmarks" / "__main__.py").exists(), reason="needs the source tree")
def test_python_m_benchmarks_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--quick" in result.stdout
