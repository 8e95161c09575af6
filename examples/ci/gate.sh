#!/usr/bin/env bash
# Release gate for a model trained elsewhere: import it (once), run the xai-harness suites on the team's
# data, copy the run's report to an artifact folder and exit with pytest's exit code (docs/ci-gating.md):
#   0 every gate holds   1 a gate failed (or a check errored)   2 interrupted / a suite does not parse
#   3 internal error     4 usage error (bad option, missing dataset or manifest)   5 nothing selected
# Every option has an environment variable of the same name in capitals (GATE_WEIGHTS, ...); options win.
# See examples/ci/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: gate.sh --weights CANDIDATE.safetensors --dataset DATA.yaml [options] [-- extra pytest arguments]

  --weights PATH        the candidate's state dict (safetensors)                        [GATE_WEIGHTS]
  --import-args "ARGS"  options of `xai-harness import`, used when PATH has no .json manifest yet,
                        e.g. "--architecture resnet50 --input-size 224 --in-chans 3"    [GATE_IMPORT_ARGS]
  --reimport            replace an existing manifest (import again with --force)        [GATE_REIMPORT=1]
  --dataset PATH.yaml   the team's data declared in YAML (docs/datasets.md)            [GATE_DATASET]
  --suite PATH          a suite file or folder; repeatable (default: gate.yaml here)    [GATE_SUITES, spaces]
  --baseline PATH       the last release's results.json (or run folder) to compare with [GATE_BASELINE]
  --report-dir DIR      where xai-harness writes its run folders (default reports/gate) [GATE_REPORT_DIR]
  --artifact-dir DIR    where this run's report is copied (default gate-report)         [GATE_ARTIFACT_DIR]
  --strict              a skip or a reported-only condition that does not hold fails too [GATE_STRICT=1]
  --python PATH         the Python that has xai-harness installed (default python3)     [GATE_PYTHON]
EOF
}

die_usage() { echo "gate.sh: $1" >&2; usage >&2; exit 4; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
weights="${GATE_WEIGHTS:-}"
import_args="${GATE_IMPORT_ARGS:-}"
reimport="${GATE_REIMPORT:-0}"
dataset="${GATE_DATASET:-}"
read -r -a suites <<< "${GATE_SUITES:-}"
baseline="${GATE_BASELINE:-}"
report_dir="${GATE_REPORT_DIR:-reports/gate}"
artifact_dir="${GATE_ARTIFACT_DIR:-gate-report}"
strict="${GATE_STRICT:-0}"
python="${GATE_PYTHON:-python3}"
extra=()
suites_from_args=()

while (($#)); do
  case "$1" in
    --weights|--import-args|--dataset|--suite|--baseline|--report-dir|--artifact-dir|--python)
      (($# >= 2)) || die_usage "$1 needs a value"
      case "$1" in
        --weights) weights="$2" ;;
        --import-args) import_args="$2" ;;
        --dataset) dataset="$2" ;;
        --suite) suites_from_args+=("$2") ;;
        --baseline) baseline="$2" ;;
        --report-dir) report_dir="$2" ;;
        --artifact-dir) artifact_dir="$2" ;;
        --python) python="$2" ;;
      esac
      shift 2 ;;
    --reimport) reimport=1; shift ;;
    --strict) strict=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die_usage "unknown argument '$1' (pytest's own options go after --)" ;;
  esac
done
if ((${#suites_from_args[@]})); then suites=("${suites_from_args[@]}"); fi
if ((${#suites[@]} == 0)); then suites=("$here/gate.yaml"); fi

[[ -n "$weights" ]] || die_usage "no candidate: pass --weights PATH.safetensors (or set GATE_WEIGHTS)"
[[ -f "$weights" ]] || die_usage "candidate weights $weights do not exist"
[[ -n "$dataset" ]] || die_usage "no dataset: pass --dataset PATH.yaml (or set GATE_DATASET); see docs/datasets.md"
# A missing dataset file, suite or baseline is left to pytest: it names the problem and exits 4.

# 1. The manifest: `xai-harness import` verifies the weights (rebuild, strict load, one forward pass) once.
manifest="${weights%.*}.json"
if [[ ! -f "$manifest" || "$reimport" == 1 ]]; then
  [[ -n "$import_args" ]] || die_usage "$weights has no manifest ($manifest) and no --import-args to write one \
(e.g. --import-args \"--architecture resnet50 --input-size 224\"; docs/external-models.md)"
  read -r -a import_words <<< "$import_args"
  force=()
  if [[ "$reimport" == 1 ]]; then force=(--force); fi
  echo "gate.sh: importing $weights ($import_args)" >&2
  import_code=0
  "$python" -m harness.cli import "$weights" "${import_words[@]}" ${force[@]+"${force[@]}"} || import_code=$?
  case "$import_code" in
    0) ;;
    2) echo "gate.sh: bad --import-args (xai-harness import exit 2)" >&2; exit 4 ;;
    130) exit 2 ;;
    *) echo "gate.sh: the candidate could not be imported (exit $import_code): the gate fails" >&2; exit 1 ;;
  esac
fi

# 2. The run: one pytest item per check; its exit code is the gate.
mkdir -p "$report_dir" "$artifact_dir"
rm -f "$artifact_dir/index.html" "$artifact_dir/results.json" "$artifact_dir/summary.md" "$artifact_dir/junit.xml"
cp "$manifest" "$artifact_dir/candidate-manifest.json"  # which weights were gated: their sha256 and import options
run_dirs() {  # the run folders under the report dir, sorted
  local dir
  for dir in "$report_dir"/*/; do
    if [[ -d "$dir" && "$(basename "$dir")" != latest ]]; then basename "$dir"; fi
  done | sort
}
before="$(run_dirs)"
cmd=("$python" -m pytest "${suites[@]}" --checkpoint "$weights" --dataset "$dataset" --report-dir "$report_dir"
     --junitxml "$artifact_dir/junit.xml" -p no:cacheprovider)
if [[ -n "$baseline" ]]; then cmd+=(--baseline "$baseline"); fi
if [[ "$strict" == 1 ]]; then cmd+=(--strict); fi
cmd+=(${extra[@]+"${extra[@]}"})
echo "gate.sh: ${cmd[*]}" >&2
code=0
"${cmd[@]}" || code=$?

# 3. The report: the run folder this command wrote (run ids sort by time; `latest` is only a complete run's copy).
run_id="$(comm -13 <(printf '%s\n' "$before") <(run_dirs) | tail -n 1)"
if [[ -n "$run_id" ]]; then
  for file in index.html results.json summary.md; do
    if [[ -f "$report_dir/$run_id/$file" ]]; then cp "$report_dir/$run_id/$file" "$artifact_dir/$file"; fi
  done
  echo "gate.sh: report of run $run_id: $artifact_dir/index.html (results: $artifact_dir/results.json)" >&2
else
  echo "gate.sh: no report written (pytest stopped before any check ran; see the error above)" >&2
fi
case "$code" in
  0) echo "gate.sh: PASS: every gate holds" >&2 ;;
  1) echo "gate.sh: FAIL: a gate failed or a check errored (exit 1)" >&2 ;;
  *) echo "gate.sh: the gate did not run to a verdict (pytest exit $code; docs/ci-gating.md)" >&2 ;;
esac
exit "$code"
