#!/usr/bin/env bash
# Pre-deployment hook: gate the candidate against production, and deploy only if the gate passed.
#
#   examples/ci/release-check.sh CANDIDATE BASELINE DATA [-- DEPLOY COMMAND...]
#   examples/ci/release-check.sh models/model.pt prod/model.pt eval/holdout.jsonl -- ./deploy.sh --env production
#
# Exit codes: 0 gate passed (and the deploy command's own status), 1 the candidate regressed, 2 the gate could not
# run. Never deploy on 2: "could not run" says nothing about the model. GATE_CONFIG (default gate.yaml, if present;
# a GATE_CONFIG that names a missing file is exit 2),
# GATE_REPORT_DIR (default gate-report), GATE (the command, default `gate`) and GATE_TRUST (baseline, candidate or
# all: checkpoints this release pipeline built itself that are programs, such as TorchScript) can be set in the
# environment.
set -uo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $0 CANDIDATE BASELINE DATA [-- DEPLOY COMMAND...]" >&2
  exit 2
fi
candidate=$1 baseline=$2 data=$3
shift 3
if [ "${1:-}" = "--" ]; then shift; fi

report_dir=${GATE_REPORT_DIR:-gate-report}
config_args=()
if [ -n "${GATE_CONFIG:-}" ]; then
  # A config that was named but is missing must stop the release: deploying with the default thresholds would
  # gate against rules nobody chose.
  if [ ! -f "$GATE_CONFIG" ]; then
    echo "error: GATE_CONFIG=$GATE_CONFIG: config file not found" >&2
    echo "release-check: the gate could not run; not deploying." >&2
    exit 2
  fi
  config_args=(--config "$GATE_CONFIG")
elif [ -f gate.yaml ]; then
  config_args=(--config gate.yaml)
fi
trust_args=()
if [ -n "${GATE_TRUST:-}" ]; then
  trust_args=(--trust-checkpoint "$GATE_TRUST")
fi
mkdir -p "$report_dir"

# shellcheck disable=SC2086  # GATE may be a command with arguments, e.g. "python -m gate"
${GATE:-gate} check "$candidate" --baseline "$baseline" --data "$data" ${config_args[@]+"${config_args[@]}"} \
  ${trust_args[@]+"${trust_args[@]}"} --json "$report_dir/report.json" --markdown "$report_dir/report.md" --junit "$report_dir/junit.xml"
status=$?

case "$status" in
  0)
    echo "release-check: the gate passed; report in $report_dir/report.md"
    if [ "$#" -gt 0 ]; then
      echo "release-check: deploying with: $*"
      exec "$@"
    fi
    ;;
  1)
    echo "release-check: the gate FAILED: the candidate regressed against production; not deploying." >&2
    echo "release-check: see $report_dir/report.md for which checks failed and by how much." >&2
    exit 1
    ;;
  2)
    echo "release-check: the gate could not run (see the error line above); not deploying." >&2
    echo "release-check: this is a setup problem (paths, config, checkpoint, data), not a verdict on the model." >&2
    exit 2
    ;;
  *)
    echo "release-check: the gate stopped with unexpected exit code $status; not deploying." >&2
    exit 2
    ;;
esac
