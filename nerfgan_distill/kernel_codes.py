"""The numbers the kernels and Python must agree on, in one place.

dtype codes, bias_act's activation and mode codes, and the fused renderer's size limits are
defined here and nowhere else: csrc/include/nerfgan_distill/kernel_codes.h is generated from
this file (``python -m nerfgan_distill.kernel_codes --write``), the Triton kernels and the
ops import it, and tests/test_kernel_codes.py checks that the header is up to date and that
the compiled module holds the same values. It imports nothing but the standard library
(no torch, no package of ours).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

# enum name -> (C++ namespace, members in order; codes count from 0). C++ spells a member
# k<Member> (kFloat32) and adds kNum<Enum>s; Python spells it in lower case ('float32').
ENUMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "DType": ("ngd", ("Float32", "Float64", "Float16", "BFloat16")),
    "Act": ("ngd::bias_act", ("Linear", "Relu", "Lrelu", "Tanh", "Sigmoid", "Elu", "Selu", "Softplus", "Swish")),
    "Mode": ("ngd::bias_act", ("Forward", "Grad", "Grad2")),
    # filtered_lrelu's two passes, and the code it keeps per intermediate sample for the gradient.
    "Pass": ("ngd::filtered_lrelu", ("Activate", "Masked")),
    "Sign": ("ngd::filtered_lrelu", ("Positive", "Negative", "Clamped")),
}

# constant name -> (C++ namespace, value): bounds of the per-ray buffers the render kernels keep.
LIMITS: dict[str, tuple[str, int]] = {
    "MaxSamples": ("ngd::render_triplanes", 512),  # coarse + fine depths per ray (and importance_depths' coarse)
    "CudaMaxChannels": ("ngd::render_triplanes", 128),  # plane channels of the pointwise (CUDA, Triton) path
    "CudaMaxOutputs": ("ngd::render_triplanes", 128),  # decoder outputs of that path
}


def codes(enum: str) -> dict[str, int]:
    """One enum's members, in Python spelling, with their codes."""
    return {member.lower(): code for code, member in enumerate(ENUMS[enum][1])}


def limit(name: str) -> int:
    return LIMITS[name][1]


DTYPE = codes("DType")
ACT = codes("Act")
BIAS_ACT_MODE = codes("Mode")
FILTERED_LRELU_PASS = codes("Pass")
FILTERED_LRELU_SIGN = codes("Sign")
RENDER_MAX_SAMPLES = limit("MaxSamples")
RENDER_CUDA_MAX_CHANNELS = limit("CudaMaxChannels")
RENDER_CUDA_MAX_OUTPUTS = limit("CudaMaxOutputs")

HEADER = pathlib.Path("csrc/include/nerfgan_distill/kernel_codes.h")


def header_text() -> str:
    """The C++ header these definitions generate."""
    lines = ["// Generated from nerfgan_distill/kernel_codes.py by `python -m nerfgan_distill.kernel_codes --write`.",
             "// Do not edit: change that file and regenerate (tests/test_kernel_codes.py checks it).",
             "#pragma once", "", "#include <cstdint>", ""]
    namespaces = dict.fromkeys([ns for ns, _ in ENUMS.values()] + [ns for ns, _ in LIMITS.values()])
    for ns in namespaces:
        lines.append(f"namespace {ns} {{")
        for name, (enum_ns, members) in ENUMS.items():
            if enum_ns == ns:
                body = ", ".join(f"k{m} = {code}" for code, m in enumerate(members))
                lines.append(f"enum {name} : int {{ {body} }};")
                lines.append(f"constexpr int kNum{name}s = {len(members)};")
        for name, (limit_ns, value) in LIMITS.items():
            if limit_ns == ns:
                lines.append(f"constexpr int64_t k{name} = {value};")
        lines.append(f"}}  // namespace {ns}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help=f"write {HEADER} under the source tree (else print it)")
    args = parser.parse_args(argv)
    text = header_text()
    if not args.write:
        sys.stdout.write(text)
        return 0
    target = pathlib.Path(__file__).resolve().parent.parent / HEADER
    if not target.parent.is_dir():
        parser.error(f"{target.parent} does not exist: run --write from a source checkout")
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
