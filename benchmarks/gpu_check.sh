#!/usr/bin/env bash
# One command for a lent GPU machine (about 5 minutes): SINE / PhaseNet / EQTransformer annotate and classify
# throughput (station-hours/s), SINE on the GPU vs the CPU, training throughput (events/s, peak memory) and the
# CLI's --device paths (sine info/classify/annotate/train). Results (gpu_check.md, gpu_check.json, CLI logs) go to
# the folder given as first argument, else $OUT, else benchmarks/results/gpu_check. Further arguments go to
# benchmarks/gpu_check.py (e.g. --device cpu --quick to check this script on a CPU).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--device cuda] [--quick] [--seisbench-cache DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu_check}"
if [[ $# -gt 0 && "$1" != --* ]]; then
    out="$1"
    shift
fi
python="${PYTHON:-python}"
if [[ -x .venv/bin/python && -z "${PYTHON:-}" ]]; then
    python=.venv/bin/python
fi
export SINE_QUIET=1
# the SeisBench cache with PhaseNet/EQTransformer 'original' weights: $SEISBENCH_CACHE_ROOT, else the shared copy
# if this checkout has one
if [[ -z "${SEISBENCH_CACHE_ROOT:-}" && -d shared/data/seisbench_cache ]]; then
    export SEISBENCH_CACHE_ROOT="$PWD/shared/data/seisbench_cache"
fi
exec timeout 540 "$python" benchmarks/gpu_check.py --out "$out" "$@"
