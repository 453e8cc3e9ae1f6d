#!/usr/bin/env bash
# The gate in any CI (Jenkins, Buildkite, CircleCI, a cron job): one command, reports on disk, the exit code kept.
#
#   examples/ci/check.sh CANDIDATE BASELINE DATA [GATE CHECK OPTIONS...]
#   examples/ci/check.sh models/model.pt prod/model.pt eval/holdout.jsonl --config gate.yaml
#
# 0 pass, 1 the candidate regressed, 2 the gate could not run; CI marks the step failed on 1 and 2 alike, and the
# message says which. Reports go to ${GATE_REPORT_DIR:-gate-report}/ (JSON, Markdown, JUnit XML for test tabs).
set -uo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $0 CANDIDATE BASELINE DATA [GATE CHECK OPTIONS...]" >&2
  exit 2
fi
candidate=$1 baseline=$2 data=$3
shift 3
out=${GATE_REPORT_DIR:-gate-report}
mkdir -p "$out"

# shellcheck disable=SC2086  # GATE may be a command with arguments, e.g. "python -m gate"
${GATE:-gate} check "$candidate" --baseline "$baseline" --data "$data" \
  --json "$out/report.json" --markdown "$out/report.md" --junit "$out/junit.xml" "$@"
status=$?
case "$status" in
  0) echo "check.sh: gate passed" ;;
  1) echo "check.sh: gate FAILED: the candidate regressed (see $out/report.md)" >&2 ;;
  *) echo "check.sh: gate could not run (exit $status): fix the setup, the model was not judged" >&2 ;;
esac
exit "$status"
