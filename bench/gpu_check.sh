#!/usr/bin/env bash
# One prepared check for a machine with a CUDA GPU, under 8 minutes; everything lands as JSON.
#
#   bench/gpu_check.sh [--dry-run] [--out DIR] [--budget SECONDS] [--only STEP,STEP]
#
# Steps, in order (each under its own time cap; a step that would start with too little of --budget left is
# recorded as skipped, so the whole run stays within --budget, default 450 s):
#   env           GPU name, driver, torch/CUDA/Triton versions, whether DALI and Fashion-MNIST are present
#   tests_triton  FASTSTEAL_KERNELS=triton pytest tests/kernels: compiled Triton kernels on CUDA against the
#                 torch reference (the CPU-only compile check is left out; one dispatch test assumes the
#                 variable is unset and is deselected)
#   tests_torch   FASTSTEAL_KERNELS=torch pytest tests/kernels tests/models tests/metrics
#   kernels       bench/kernels.py: plain PyTorch vs reference vs Triton per layer and per training step
#   fid           bench/fid_throughput.py --bf16: Inception extraction, Newton-Schulz and eigh on the GPU
#   fid_dali      faststeal fid --loader dali (GPU resize pipeline) and
#   fid_torch     faststeal fid --loader torch on the same 2000 + 2000 images, to compare the two values
#   train64       a small 64x64 PGGAN target (2 kimg)
#   extract64     a short extraction from it (1000 queries, 2 kimg of attack training, FID on 500 images); the
#                 default fast thief above 32x32 trains under bf16 on a GPU with bf16 (since 2026-12-05)
#   extract64rgb  a 64x64 RGB extraction: the test suite's small DCGAN (random weights: a timing, not a result),
#                 10,000 queries, the default thief for 20 kimg, FID on 2,000 images; expected ~64 s on one
#                 H200 with the fast thief (44 s of it training, ~460 img/s; measured 2026-12-04); the default
#                 at 64x64 is the DCGAN thief since 2026-12-05, whose GPU time is not measured yet
#   latents64rgb  the same target with chosen latents (2,000 queries, 4 kimg: the paired-loss phase, then the
#                 GAN phase) on 500 images; the distillation path once crashed on CUDA only (a CPU zero tensor)
# Output: DIR (default bench/results/gpu_check-<UTC time>/) with summary.json (GPU name and driver, every
# step's command, status, seconds and log tail, and the parsed results), one log per step, kernels.json,
# fid_throughput.json.
#
# --dry-run (any machine, no GPU needed, writes nothing): checks that every script, test path and flag the
# steps use exists and parses: pytest --collect-only for the test steps; for each script or CLI command,
# every flag must appear in its --help and the full argument list followed by --help must parse.
# --only runs (or checks) just the named steps. PYTHON names the interpreter (default: python).
set -uo pipefail

ROOT=${FASTSTEAL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$ROOT" || exit 2
PY=${PYTHON:-python}
DRY=0
OUT=""
BUDGET=450
ONLY=""
STEP_NAMES="env tests_triton tests_torch kernels fid fid_dali fid_torch train64 extract64 extract64rgb latents64rgb"

usage() { sed -n '4p' "${BASH_SOURCE[0]}" | sed 's/^# *//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) [ $# -ge 2 ] || { echo "error: --out needs a folder" >&2; exit 2; }; OUT=$2; shift ;;
    --budget) [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || { echo "error: --budget needs whole seconds" >&2; exit 2; }
              BUDGET=$2; shift ;;
    --only) [ $# -ge 2 ] || { echo "error: --only needs step names, e.g. kernels,fid" >&2; exit 2; }
            for n in ${2//,/ }; do
              [[ " $STEP_NAMES " == *" $n "* ]] || { echo "error: --only: no step '$n'; steps: $STEP_NAMES" >&2; exit 2; }
            done
            ONLY=",$2,"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown option $1; usage: $(usage)" >&2; exit 2 ;;
  esac
  shift
done
OUT=${OUT:-bench/results/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)}

FAILED=0
STEPS_TSV=""
if [ "$DRY" = 0 ]; then
  command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: this script needs a CUDA GPU (try --dry-run)" >&2; exit 2; }
  mkdir -p "$OUT" || exit 2
  STEPS_TSV="$OUT/steps.tsv"
  : > "$STEPS_TSV"
fi
command -v timeout >/dev/null || { echo "error: the 'timeout' command (coreutils) is needed" >&2; exit 2; }

# ---- dry-run checks -------------------------------------------------------------------------------------
check_flags() {  # check_flags HELP_CMD... -- ARGS...: every -flag in ARGS appears in HELP_CMD's output
  # and (argparse scripts: values are converted before --help is reached) ARGS followed by --help parse.
  local help_cmd=() args=() seen=0 a help
  for a in "$@"; do
    if [ "$seen" = 0 ] && [ "$a" = "--" ]; then seen=1; continue; fi
    if [ "$seen" = 0 ]; then help_cmd+=("$a"); else args+=("$a"); fi
  done
  help=$("${help_cmd[@]}" --help 2>&1) || { echo "  '${help_cmd[*]} --help' failed: $(echo "$help" | tail -1)"; return 1; }
  for a in "${args[@]}"; do
    case "$a" in
      -*) a=${a%%=*}
          grep -qE -- "(^|[[ ,])${a}([] ,=]|$)" <<<"$help" || { echo "  flag $a is not in '${help_cmd[*]} --help'"; return 1; } ;;
    esac
  done
  [ "${help_cmd[1]}" = -m ] && return 0  # click: --help is eager, so values are not parsed; flags were checked
  "${help_cmd[@]}" "${args[@]}" --help >/dev/null 2>&1 || { echo "  '${help_cmd[*]} ${args[*]} --help' does not parse"; return 1; }
}

dry_check() {  # dry_check CMD...: the command's script/test paths exist and its arguments parse
  if [ "$1" != "$PY" ]; then echo "  unexpected command $1"; return 1; fi
  if [ "$2" = "-m" ] && [ "$3" = "pytest" ]; then
    local args=() a prev=""
    for a in "${@:4}"; do
      case "$a" in --junitxml=*) ;; *) args+=("$a") ;; esac
      if [ "$prev" = --deselect ]; then  # a deselected test must exist, or the deselection is stale
        grep -q "def ${a##*::}(" "${a%%::*}" 2>/dev/null || { echo "  deselected test $a not found"; return 1; }
      fi
      prev=$a
    done
    local out rc
    out=$("$PY" -m pytest --collect-only -q "${args[@]}" 2>&1)
    rc=$?  # 5: nothing collected
    [ "$rc" = 0 ] || { echo "  pytest --collect-only exit $rc:"; echo "$out" | tail -5 | sed 's/^/  /'; return 1; }
    return 0
  fi
  if [ "$2" = "-m" ] && [ "$3" = "faststeal" ]; then
    check_flags "$PY" -m faststeal "$4" -- "${@:5}"
    return
  fi
  if [ "$2" = "-c" ]; then
    "$PY" -c "import ast, sys; ast.parse(sys.argv[1])" "$3" || { echo "  inline Python does not parse"; return 1; }
    return 0
  fi
  [ -f "$2" ] || { echo "  script $2 not found"; return 1; }
  check_flags "$PY" "$2" -- "${@:3}"
}

brief() { local s="$*"; s=${s%%$'\n'*}; s=${s//$'\t'/ }; echo "${s:0:160}"; }  # a command on one short line

# ---- running steps --------------------------------------------------------------------------------------
wanted() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }  # is step $1 selected by --only?

# step NAME CAP_SECONDS [VAR=VALUE ...] -- CMD...
step() {
  local name=$1 cap=$2 envs=() a
  shift 2
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  wanted "$name" || return 0
  if [ "$DRY" = 1 ]; then
    local msg
    if msg=$(env "${envs[@]}" bash -c "$(declare -f dry_check check_flags); PY='$PY'; dry_check \"\$@\"" _ "$@" 2>&1); then
      echo "ok      $name: $(brief "${envs[@]}" "$@")"
    else
      echo "FAILED  $name: $(brief "${envs[@]}" "$@")"; echo "$msg"; FAILED=1
    fi
    return
  fi
  local left=$((BUDGET - SECONDS)) log="$OUT/$name.log" t0=$SECONDS rc status
  if [ "$left" -lt 20 ]; then
    printf '%s\tskipped\t\t0\t%s\n' "$name" "$(brief "${envs[@]}" "$@")" >> "$STEPS_TSV"; echo "== $name: skipped (budget spent)"; return
  fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (cap ${cap}s): $(brief "${envs[@]}" "$@")"
  env "${envs[@]}" timeout --kill-after=10 "$cap" "$@" > "$log" 2>&1
  rc=$?
  case $rc in 0) status=passed ;; 124|137) status=timeout ;; *) status=failed ;; esac
  [ "$status" = passed ] || FAILED=1
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - t0))" "$(brief "${envs[@]}" "$@")" >> "$STEPS_TSV"
  echo "   $status in $((SECONDS - t0)) s (log $log)"
}

ENV_PROBE='import json, sys, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if info["cuda_available"]:
    info["device"] = torch.cuda.get_device_name()
    info["capability"] = "sm_%d%d" % torch.cuda.get_device_capability()
try:
    import triton
    info["triton"] = triton.__version__
except Exception as exc:
    info["triton"] = f"not importable: {exc}"
from faststeal.metrics import dali
info["dali"] = dali.available()
try:
    from faststeal.data import load_fashion_mnist
    load_fashion_mnist("test")
    info["fashion_mnist"] = True
except Exception as exc:
    info["fashion_mnist"] = f"missing: {exc}"
json.dump(info, open(sys.argv[1], "w") if len(sys.argv) > 1 else sys.stdout, indent=1)'

IGNORE_CPU_ONLY=(--ignore=tests/bench/test_compile_check.py)
ENV_UNSET_TEST=tests/kernels/test_dispatch.py::test_forced_triton_not_installed_raises
PYTEST=(-m pytest -q -n 0 -p no:cacheprovider "${IGNORE_CPU_ONLY[@]}")  # one process: one GPU, timed steps
FID_ARGS=(fashion-mnist:test fashion-mnist:train -n 2000 --batch 200 --device cuda --no-cache --json)

if [ "$DRY" = 0 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/nvidia_smi.csv" 2>&1
fi
step env 60 -- "$PY" -c "$ENV_PROBE" "$OUT/env.json"
step tests_triton 120 FASTSTEAL_KERNELS=triton -- "$PY" "${PYTEST[@]}" --deselect "$ENV_UNSET_TEST" \
  --junitxml="$OUT/tests_triton.xml" tests/kernels
step tests_torch 120 FASTSTEAL_KERNELS=torch -- "$PY" "${PYTEST[@]}" --junitxml="$OUT/tests_torch.xml" \
  tests/kernels tests/models tests/metrics
step kernels 110 -- "$PY" bench/kernels.py --time-limit 80 --compile-budget 20 --out "$OUT/kernels.json"
step fid 70 -- "$PY" bench/fid_throughput.py --bf16 --out "$OUT/fid_throughput.json"
if [ "$DRY" = 0 ] && wanted fid_dali && [ -f "$OUT/env.json" ] && \
   ! "$PY" -c "import json, sys; sys.exit(json.load(open(sys.argv[1])).get('dali') is not True)" "$OUT/env.json"; then
  printf 'fid_dali\tskipped\t\t0\tDALI not installed (pip install nvidia-dali-cuda120)\n' >> "$STEPS_TSV"
  echo "== fid_dali: skipped (DALI not installed)"
else
  step fid_dali 45 -- "$PY" -m faststeal fid "${FID_ARGS[@]}" --loader dali
fi
step fid_torch 45 -- "$PY" -m faststeal fid "${FID_ARGS[@]}" --loader torch
step train64 50 -- "$PY" -m faststeal train-target --arch pggan --data fashion-mnist --resolution 64 --channels 1 \
  --kimg 2 --width 32 --batch 32 --out "$OUT/target64.pt" --run-dir "$OUT/target64"
step extract64 100 -- "$PY" -m faststeal extract --target "$OUT/target64.pt" --queries 1000 --attack-kimg 2 \
  --fid-n 500 --curve-n 64 --out "$OUT/extract64"
step extract64rgb 150 -- "$PY" -m faststeal extract --target py:tests/foreign_generators.py:make_dcgan_factory \
  --queries 10000 --attack-kimg 20 --fid-n 2000 --curve-n 64 --out "$OUT/extract64rgb"
step latents64rgb 60 -- "$PY" -m faststeal extract --target py:tests/foreign_generators.py:make_dcgan_factory \
  --knowledge latents --queries 2000 --attack-kimg 4 --fid-n 500 --curve-n 64 --out "$OUT/latents64rgb"

if [ "$DRY" = 1 ]; then
  "$PY" -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" bench/_gpu_summary.py || { echo "FAILED  summary: bench/_gpu_summary.py does not compile"; FAILED=1; }
  [ "$FAILED" = 0 ] && echo "dry run: every step's scripts, tests and flags check out" || echo "dry run: some steps do not"
  exit "$FAILED"
fi

"$PY" bench/_gpu_summary.py "$OUT" "$SECONDS" "$BUDGET" || { echo "error: could not write $OUT/summary.json" >&2; exit 1; }
echo "total $SECONDS s; wrote $OUT/summary.json"
exit "$FAILED"
