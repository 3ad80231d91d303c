"""Check a repository folder before anything is uploaded: exactly the files a repository needs, a model card whose
YAML parses, and, in fresh subprocesses under each given Python (both transformers lines in this project's tests),
`AutoModel`/`AutoProcessor` with `trust_remote_code` loading it offline: the model embeds a fixed query and page
(as the source's processor built them) exactly as the source does (fp32, <= 1e-5), and the processor builds the same
tokens and image grids for them.

Run in a subprocess as `python -m colqwen3.publish.verify FOLDER REFERENCE.pt OUT.json`.
"""

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from colqwen3.publish.build import unexpected_files
from colqwen3.remote_code import AUTO_MAP, MODEL_CARD, REMOTE_CODE_FILES
from colqwen3.serving.routes import launch_override_problem

QUERY = "What is the total due on the invoice?"
ATOL = 1e-5


@dataclass
class Verification:
    ok: bool
    problems: list = field(default_factory=list)
    loads: list = field(default_factory=list)  # one row per Python: transformers version, max |diff| per input

    def to_dict(self) -> dict:
        return asdict(self)


def fixed_inputs(processor) -> dict:
    """The query and page every verification embeds."""
    from colqwen3.testing.pages import make_page

    page = make_page(["INVOICE 2026-114", "Total due: 1,240 EUR"], size=(300, 400), seed=7)
    return {"query": processor.process_queries([QUERY]), "page": processor.process_images([page])}


@torch.inference_mode()
def embed_fixed(model, batches: dict) -> dict:
    """Embeddings of `batches` by `model` with its parameters in float32 (values kept: a model cast to bf16 for
    saving gives the reference of the bf16 repository)."""
    for parameter in model.parameters():
        parameter.data = parameter.data.float()
    model.eval()
    return {name: model(**batch).embeddings[0] for name, batch in batches.items()}


def reference(model, processor) -> dict:
    """What every load is checked against: the fixed inputs as the source's processor builds them, and the source's
    embeddings of them. Loads embed these same inputs, so image-resampling differences between environments (PIL
    here, torchvision there) neither hide nor fake a weight or code problem; their processors are checked apart."""
    batches = fixed_inputs(processor)
    return {"batches": batches, "embeddings": embed_fixed(model, batches)}


def check_files(folder: Path) -> list:
    problems = []
    names = {path.name for path in folder.iterdir()}
    missing = [
        name
        for name in (*REMOTE_CODE_FILES, "config.json", "preprocessor_config.json", MODEL_CARD)
        if name not in names
    ]
    if missing:
        problems.append(f"missing files: {missing}")
    if not any(name.startswith("model") and name.endswith(".safetensors") for name in names):
        problems.append("no safetensors weights")
    extra = unexpected_files(folder)
    if extra:
        problems.append(f"files a model repository should not hold: {extra}")
    if "config.json" in names:
        config = json.loads((folder / "config.json").read_text())
        auto_map = config.get("auto_map", {})
        if any(auto_map.get(key) != value for key, value in AUTO_MAP.items()):
            problems.append(f"config.json auto_map is {auto_map}, expected {AUTO_MAP}")
        if problem := launch_override_problem(config):
            problems.append(problem)
    for name in ("processor_config.json", "preprocessor_config.json"):
        if name in names and "AutoProcessor" not in json.loads((folder / name).read_text()).get("auto_map", {}):
            problems.append(f"{name} has no auto_map for AutoProcessor")
    return problems


def check_card(folder: Path) -> list:
    from huggingface_hub import ModelCard

    path = folder / MODEL_CARD
    if not path.exists():
        return []
    try:
        data = ModelCard.load(path).data.to_dict()
    except Exception as error:  # a YAML or metadata error, whatever huggingface_hub raises for it
        return [f"{MODEL_CARD} metadata does not parse: {error}"]
    wanted = {"license", "library_name", "pipeline_tag"}
    return [f"{MODEL_CARD} metadata lacks {sorted(wanted - set(data))}"] if wanted - set(data) else []


def verify_repository(folder, expected: dict, pythons: list) -> Verification:
    """Every check above; `expected` from `reference`, `pythons` the interpreters to load the folder under."""
    folder = Path(folder)
    problems = check_files(folder) + check_card(folder)
    loads = []
    with tempfile.TemporaryDirectory() as work:
        reference_path = Path(work) / "reference.pt"
        batches = {name: {k: v.cpu() for k, v in batch.items()} for name, batch in expected["batches"].items()}
        embeddings = {name: value.float().cpu() for name, value in expected["embeddings"].items()}
        torch.save({"batches": batches, "embeddings": embeddings}, reference_path)
        for python in pythons:
            out = Path(work) / "load.json"
            environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
            command = [str(python), "-m", "colqwen3.publish.verify", str(folder), str(reference_path), str(out)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=environment)
            if done.returncode != 0 or not out.exists():
                last = done.stderr.strip().splitlines()[-1:] or done.returncode
                problems.append(f"loading under {python} failed: {last}")
                continue
            row = json.loads(out.read_text()) | {"python": str(python)}
            loads.append(row)
            if not row["same_prompts"]:
                problems.append(f"the processor under transformers {row['transformers']} builds other tokens or grids")
            for name, diff in row["max_abs_diff"].items():
                if not diff <= ATOL:
                    problems.append(
                        f"{name} embeddings under transformers {row['transformers']} differ by {diff:.2e} > {ATOL:g}"
                    )
    return Verification(ok=not problems, problems=problems, loads=loads)


def main() -> None:
    import transformers
    from transformers import AutoModel, AutoProcessor

    folder, reference_path, out_path = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    expected = torch.load(reference_path)
    got = embed_fixed(model, expected["batches"])
    diffs = {name: (got[name] - value).abs().max().item() for name, value in expected["embeddings"].items()}
    built = fixed_inputs(processor)  # this environment's processor: the same prompts and grids; pixels may resample
    same_prompts = all(
        torch.equal(built[name][key], batch[key])
        for name, batch in expected["batches"].items()
        for key in ("input_ids", "attention_mask", "image_grid_thw")
        if key in batch
    )
    pixels = (built["page"]["pixel_values"] - expected["batches"]["page"]["pixel_values"]).abs().max().item()
    result = {
        "transformers": transformers.__version__,
        "class": type(model).__name__,
        "max_abs_diff": diffs,
        "same_prompts": same_prompts,
        "pixel_max_abs_diff": pixels,
    }
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
