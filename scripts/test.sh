#!/usr/bin/env bash
# Installs keras_hiri with all three backends and runs the test suite once per
# backend (one pytest process each, as Keras selects its backend at import).
# Besides, the built wheel is installed with only [jax] and only [torch]
# (plus [grain], which needs no TensorFlow) into fresh virtual environments
# without TensorFlow, and scripts/smoke_installed.py runs there from outside
# the source tree.
#
# The work runs as two streams side by side: a test process keeps about one
# core busy (tracing and compiling are single-threaded), and CI has two.
#   stream 1: pytest tensorflow, then pytest torch
#   stream 2: the installed-wheel smoke of jax (at constraints.txt's versions and at
#             the lowest ones the declared ranges admit, constraints-floor.txt),
#             pytest jax, the smoke of torch,
#             and the JAX tests of the ops, builder and stem again with two host
#             devices (XLA_FLAGS=--xla_force_host_platform_device_count=2): the
#             suite passes on any device configuration
# (balanced by the seconds of a CI run, 2026-11-27: jax 1163 s, tensorflow 941 s,
# torch 567 s, smoke jax 168 s, smoke torch 78 s; tests that check JAX in child
# processes are marked runs_in("jax") to keep them in stream 2)
# Each stream's output is printed whole when both are done, with the seconds
# each part took.
# Usage: bash scripts/test.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
started=$SECONDS
python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all,dev]" || exit 1
export TF_CPP_MIN_LOG_LEVEL=2
report_dir=$(mktemp -d)
echo "install: $((SECONDS - started)) s" >"$report_dir/times"

timed() {  # timed NAME COMMAND...: runs COMMAND, logs NAME's seconds, returns its status
  local name=$1 t0=$SECONDS status
  shift
  "$@"
  status=$?
  echo "$name: $((SECONDS - t0)) s (exit $status)" >>"$report_dir/times"
  return $status
}

smoke() {  # smoke BACKEND [NAME CONSTRAINTS]: the installed wheel, one backend, no TensorFlow
  local backend=$1 name=${2:-$1} constraints=${3:-constraints.txt}
  local venv="$report_dir/venv-$name"
  echo "=== installed wheel [$backend], no TensorFlow, $constraints"
  python -m venv "$venv" && "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$repo/$constraints" "$wheel[$backend,grain]" || { echo "smoke $backend: 0 passed, 1 failed" \
    | tee "$report_dir/smoke-$name.log"; return 1; }
  (cd "$report_dir" && KERAS_BACKEND=$backend "$venv/bin/python" "$repo/scripts/smoke_installed.py") \
    | tee "$report_dir/smoke-$name.log"
}

suite() {  # suite BACKEND [pytest args]; BACKEND jax_two_devices: the device-dependent JAX tests
  local backend=$1 tests=tests
  shift
  if [ "$backend" = jax_two_devices ]; then
    tests="tests/test_ops.py tests/test_builder.py tests/test_stem.py"
  fi
  echo "=== KERAS_BACKEND=${backend%%_*} ${XLA_FLAGS:-}"
  KERAS_BACKEND=${backend%%_*} python -m pytest -q -p no:cacheprovider --durations=12 \
    --junitxml="$report_dir/$backend.xml" "$@" $tests
}

python -m pip wheel -q --disable-pip-version-check --no-deps -w "$report_dir/dist" . || exit 1
wheel=$(ls "$report_dir"/dist/keras_hiri-*.whl)

(
  status=0
  timed "pytest tensorflow" suite tensorflow "$@" || status=1
  timed "pytest torch" suite torch "$@" || status=1
  exit $status
) >"$report_dir/stream1.log" 2>&1 &
stream1=$!
(
  status=0
  timed "smoke jax" smoke jax || status=1
  timed "smoke jax, lowest declared versions" smoke jax jax-floor constraints-floor.txt || status=1
  timed "pytest jax" suite jax "$@" || status=1
  timed "smoke torch" smoke torch || status=1
  XLA_FLAGS=--xla_force_host_platform_device_count=2 timed "pytest jax, two devices" \
    suite jax_two_devices "$@" || status=1
  exit $status
) >"$report_dir/stream2.log" 2>&1 &
stream2=$!
status=0
wait $stream1 || status=1
wait $stream2 || status=1

cat "$report_dir/stream2.log" "$report_dir/stream1.log"
echo "=== seconds per part (the streams ran side by side)"
cat "$report_dir/times"
echo "total: $((SECONDS - started)) s"
python - "$report_dir" <<'PY'
import glob, re, sys, xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
suites = sorted(glob.glob(sys.argv[1] + "/*.xml"))
for path in suites:
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    for key in total:
        total[key] += int(suite.get(key, 0))
failed = total["failures"] + total["errors"] + (4 - len(suites))  # a suite that wrote no report
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
for backend in ("jax", "jax-floor", "torch"):
    try:
        match = re.search(r"(\d+) passed, (\d+) failed", open(f"{sys.argv[1]}/smoke-{backend}.log").read())
    except OSError:
        match = None
    if match:
        passed, failed = passed + int(match[1]), failed + int(match[2])
    else:
        failed += 1
print(f"all backends: {passed} passed, {failed} failed, {total['skipped']} skipped")
PY
exit $status
