#!/usr/bin/env bash
# Installs keras_hiri with all three backends and runs the test suite once per
# backend (one pytest process each, as Keras selects its backend at import).
# Usage: bash scripts/test.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --disable-pip-version-check -e ".[all,dev]" || exit 1
export TF_CPP_MIN_LOG_LEVEL=2
report_dir=$(mktemp -d)
status=0
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider \
    --junitxml="$report_dir/$backend.xml" "$@" tests || status=1
done
python - "$report_dir" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    for key in total:
        total[key] += int(suite.get(key, 0))
failed = total["failures"] + total["errors"]
passed = total["tests"] - failed - total["skipped"]
print(f"all backends: {passed} passed, {failed} failed, {total['skipped']} skipped")
PY
exit $status
