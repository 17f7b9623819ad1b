#!/usr/bin/env bash
# Everything a GPU machine has to check, in stages that each fit one 10-minute call.
# Run from the repository root on a machine with an NVIDIA GPU, nvcc, compute-sanitizer and
# a CUDA build of PyTorch (+ Triton):
#
#   bash tools/gpu_session.sh build test sanitize   # then, in later calls:
#   bash tools/gpu_session.sh build bench           # BENCH_OPS="upfirdn2d bias_act" for some ops only,
#                                                   # BENCH_ARGS="--batch 8" for some shapes only
#   bash tools/gpu_session.sh build bench-teacher
#
# build     installs the package (CUDA for this GPU's arch only, to build fast), no deps
# test      pytest -m gpu (every backend against the reference on the GPU)
# sanitize  compute-sanitizer memcheck, racecheck, initcheck, synccheck over every CUDA kernel
#           (tools/sanitize_kernels.py)
# bench     the kernel benchmarks on cuda (fp32, fp16, bf16), one step per op
# bench-teacher  the teacher's images/s and memory against batch size
#
# Logs and result files are packed into $OUT/gpu_results.tgz (few files come back from a
# device machine), next to summary.txt with one line per step. A failing step is recorded
# and the next one still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
work=$(mktemp -d)
pack() {
  cp "$work/summary.txt" "$out/" 2>/dev/null
  tar czf "$out/gpu_results.tgz" -C "$work" .
}
trap pack EXIT
export PYTHONUNBUFFERED=1
status=0

step() {  # step NAME COMMAND...: run, log to NAME.log, record the outcome
  local name=$1
  shift
  local start=$SECONDS
  "$@" >"$work/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - start)) s" | tee -a "$work/summary.txt"
  [ $rc -eq 0 ] || status=1
}

arch() {
  python3 -c "import torch; major, minor = torch.cuda.get_device_capability(); print(f'{major}{minor}-real')"
}

for stage in "$@"; do
  case $stage in
    build)
      step build env NERFGAN_DISTILL_CUDA_ARCHS="$(arch)" MAX_JOBS="$(nproc)" \
        python3 -m pip install --no-build-isolation --no-deps --no-cache-dir -v . ;;
    test)
      step pytest_gpu python3 -m pytest -m gpu -q -rs -p no:cacheprovider tests ;;
    sanitize)
      for tool in memcheck racecheck initcheck synccheck; do
        step "sanitize_$tool" compute-sanitizer --tool "$tool" --error-exitcode 1 python3 tools/sanitize_kernels.py
      done ;;
    bench)
      for op in ${BENCH_OPS:-bias_act upfirdn2d modulated_conv2d sample_triplanes composite_rays importance_depths render_triplanes filtered_lrelu}; do
        step "bench_$op" nerfgan-distill bench --op "$op" --device cuda --dtype float32 --dtype float16 \
          --dtype bfloat16 ${BENCH_ARGS:-} --out "$work"
      done ;;
    bench-teacher)
      step bench_teacher nerfgan-distill bench-teacher --device cuda --out "$work" ;;
    *)
      echo "unknown stage '$stage' (build, test, sanitize, bench, bench-teacher)" >&2
      exit 2 ;;
  esac
done
exit $status
