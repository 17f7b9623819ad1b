"""Triton kernels, installed as ``nerfgan_distill.triton_kernels``.

Kernels and their launchers only: no validation, no autograd. Importing this
package does not import triton; the kernel modules do. Triton decides when a
kernel is decorated whether it runs compiled or under its CPU interpreter
(TRITON_INTERPRET=1), so that variable must be set before the first use.
"""
from __future__ import annotations


def interpreted() -> bool:
    """Whether our kernels run under the Triton interpreter in this process (imports triton)."""
    from . import bias_act

    return bias_act.INTERPRETED
