"""Frame rates of `nerfgan-distill view`, measured through its real server: a WebSocket client
sends a yaw sweep one request at a time (as the page does) and records, per frame, the teacher's
and the student's milliseconds (measured by the server) and the round trip the client saw
(render + PNG encoding + transfer). JSON under benchmarks/results/ (suite 'viewer').

    python tools/measure_viewer.py --student demo_out/student.safetensors [--teacher bundled] [--frames 60]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _median(values):
    return statistics.median(values) if values else None


def measure(url: str, frames: int, seeds) -> dict:
    from websockets.sync.client import connect

    rows = []
    with connect(url.replace("http://", "ws://") + "ws", max_size=2**24) as ws:
        json.loads(ws.recv())  # info
        request_id = 0
        for seed in seeds:
            for k in range(frames):
                request_id += 1
                start = time.perf_counter()
                ws.send(json.dumps({"type": "render", "id": request_id, "seed": seed, "yaw": -0.5 + k / max(frames - 1, 1),
                                    "depth": True}))
                frame = json.loads(ws.recv())
                if frame["type"] != "frame":
                    raise RuntimeError(f"the viewer replied {frame}")
                rows.append({"seed": seed, "yaw": frame["view"]["yaw"], "round_trip_ms": (time.perf_counter() - start) * 1e3,
                             "teacher_ms": frame["teacher"]["speed"]["ms"],
                             "student_ms": frame.get("student", {}).get("speed", {}).get("ms")})
    steady = rows[1:]  # the first frame pays for warm-up
    teacher_ms = _median([r["teacher_ms"] for r in steady])
    student_ms = _median([r["student_ms"] for r in steady if r["student_ms"] is not None])
    round_trip = _median([r["round_trip_ms"] for r in steady])
    return {"frames": len(rows), "teacher_ms_median": teacher_ms, "teacher_images_per_s": 1e3 / teacher_ms,
            "student_ms_median": student_ms, "student_images_per_s": 1e3 / student_ms if student_ms else None,
            "student_speedup": teacher_ms / student_ms if student_ms else None,
            "round_trip_ms_median": round_trip, "page_frames_per_s": 1e3 / round_trip, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="bundled")
    parser.add_argument("--student", type=Path)
    parser.add_argument("--device", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=60, help="frames per seed (default 60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    from nerfgan_distill import student, teacher
    from nerfgan_distill.bench.harness import ResultFile, environment
    from nerfgan_distill.model_pair import check_pair
    from nerfgan_distill.teacher_cli import _device
    from nerfgan_distill.viewer import FrameRenderer, create_app, running

    device = _device(args.device)
    G = teacher.load_named(args.teacher, device=device)
    S = student.load(args.student, device=device) if args.student else None
    if S is not None:
        check_pair(G, S, where=f"--student {args.student}")
    with running(create_app(FrameRenderer(G, S, device=device))) as url:
        result = measure(url, args.frames, args.seeds)
    out = ResultFile(args.out, "viewer", {**environment(device), "teacher": args.teacher,
                                          "student": str(args.student) if args.student else None})
    rows = result.pop("rows")
    out.data["summary"] = result
    for row in rows:
        out.add(row)
    print(json.dumps(result, indent=1))
    print(f"wrote {out.path}")


if __name__ == "__main__":
    main()
