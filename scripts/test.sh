#!/usr/bin/env bash
# Installs keras_hiri with all three backends and runs the test suite once per
# backend (one pytest process each, as Keras selects its backend at import).
# Before that, the built wheel is installed with only [jax] and only [torch]
# (plus [grain], which needs no TensorFlow)
# into fresh virtual environments without TensorFlow, and
# scripts/smoke_installed.py runs there from outside the source tree.
# Usage: bash scripts/test.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
python -m pip install -q --disable-pip-version-check -e ".[all,dev]" || exit 1
export TF_CPP_MIN_LOG_LEVEL=2
report_dir=$(mktemp -d)
status=0

# --- the installed wheel, one backend, no TensorFlow
python -m pip wheel -q --disable-pip-version-check --no-deps -w "$report_dir/dist" . || exit 1
wheel=$(ls "$report_dir"/dist/keras_hiri-*.whl)
for backend in jax torch; do
  echo "=== installed wheel [$backend], no TensorFlow"
  venv="$report_dir/venv-$backend"
  python -m venv "$venv" && "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "$wheel[$backend,grain]" || { status=1; echo "smoke $backend: 0 passed, 1 failed"; continue; }
  (cd "$report_dir" && KERAS_BACKEND=$backend "$venv/bin/python" "$repo/scripts/smoke_installed.py") \
    | tee "$report_dir/smoke-$backend.log" || status=1
done

for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider --durations=12 \
    --junitxml="$report_dir/$backend.xml" "$@" tests || status=1
done
python - "$report_dir" <<'PY'
import glob, re, sys, xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    for key in total:
        total[key] += int(suite.get(key, 0))
failed = total["failures"] + total["errors"]
passed = total["tests"] - failed - total["skipped"]
for path in sorted(glob.glob(sys.argv[1] + "/smoke-*.log")):
    match = re.search(r"(\d+) passed, (\d+) failed", open(path).read())
    if match:
        passed, failed = passed + int(match[1]), failed + int(match[2])
    else:
        failed += 1
print(f"all backends: {passed} passed, {failed} failed, {total['skipped']} skipped")
PY
exit $status
