"""The one vLLM parity harness: vLLM (CPU, 0.32) against our Transformers `ColQwen3`, on tiny random checkpoints.

Every vLLM check of this repository runs through `run_parity` (command line: `colqwen3 vllm-check`), offline
(`LLM.encode` + `LLM.score`, engines in this process, one after the other) or over HTTP (`vllm serve` subprocesses:
`/pooling`, `/score`, `/rerank`). Cases (a route and a checkpoint):

- `native`: vLLM's own `ColQwen3Model` on a checkpoint whose head has a NON-ZERO bias, exported with
  `prepare_for_vllm_native`. Expected exact for text and images.
- `native-nobias`: the native model on a checkpoint whose head has no bias, config.json unchanged. Expected exact.
- `transformers`: vLLM's Transformers backend running our remote code on the same exported checkpoint as `native`,
  launched with the DeepStack-channel override (`colqwen3.serving.routes.route_options`). Expected exact.
- `transformers-no-channels`: the same backend without that override. Text expected exact; image tokens differ
  because the backend then drops DeepStack, so images are also compared with a Transformers forward without DeepStack
  (reference `transformers-no-deepstack`), which is expected exact.
- `native-zerobias`: like `native-nobias`, but the head has a bias of zeros. Expected exact.
- `native-asis`: the native model on the biased checkpoint exactly as `save_pretrained` wrote it: shows vLLM 0.32
  silently dropping the bias. Reported, never checked (the canary test reads it).

Checkpoints are written into folders whose names are not Python identifiers (like Hub cache snapshots). All
Transformers references are computed BEFORE the first engine starts: vLLM's Transformers backend patches the Qwen3-VL
classes in place. Every prompt runs unpadded, one sequence per request, as vLLM runs them.

Beyond one request per query and per page, each case also embeds the last page again (`image-again`: vLLM serves it
from its encoder cache, which keeps at least the most recent page; offline, the harness counts encoder runs to show
it) and, offline, sends pages and queries interleaved in one `LLM.encode` call (`mixed`). Offline,
`max_num_batched_tokens` below one page forces chunked prefill (and the harness checks the steps it took).
"""

import contextlib
import gc
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from colqwen3.serving.export import prepare_for_vllm_native
from colqwen3.serving.routes import POOLING_TASK
from colqwen3.testing.pages import sample_pages
from scoring_colqwen3 import score_multi_vector

# case -> (route, checkpoint, reference)
CASES = {
    "native": ("native", "exported", "biased"),
    "native-nobias": ("native", "nobias", "nobias"),
    "transformers": ("transformers", "exported", "biased"),
    "transformers-no-channels": ("transformers", "exported", "biased"),
    "native-zerobias": ("native", "zerobias", "zerobias"),
    "native-asis": ("native", "asis", "biased"),
}
DEFAULT_CASES = ("native", "native-nobias", "transformers")
EXACT_CASES = ("native", "native-nobias", "native-zerobias", "transformers")
NO_CHANNEL_CASES = ("transformers-no-channels",)  # launched without the DeepStack-channel override
VIAS = ("offline", "server")
QUERIES = (
    "What is the total due on the invoice?",
    "How much did revenue grow in Q3?",
    "What is the capital of France?",
    "attention map over a scanned technical report",
)


@dataclass
class Settings:
    """What to run and how strictly to check it (absolute tolerances on per-token vectors and on scores)."""

    cases: tuple = DEFAULT_CASES
    via: str = "offline"
    layout: str = "tomoro"
    tie_word_embeddings: bool = False  # untied: a `vlm.lm_head.weight` is on disk and must be skipped
    max_visual_tokens: Optional[int] = None  # None: the tiny kit's default budget
    n_queries: int = 4
    n_pages: int = 4
    score: bool = True  # also score inside vLLM (`LLM.score` or `/score` + `/rerank`)
    text_atol: float = 1e-5
    image_atol: float = 1e-5
    score_atol: float = 1e-3
    max_model_len: int = 2048
    max_num_batched_tokens: Optional[int] = None  # offline: below one page (75 tokens), chunked prefill
    seed: int = 0


@dataclass
class Embeddings:
    text: list
    image: list
    image_again: Optional[list] = None  # the last page embedded a second time, alone
    mixed: Optional[list] = None  # [page 0, query 0, page 1, query 1, ...] in one call

    def interleaved(self) -> list:
        """What `mixed` holds, from the separate requests."""
        return interleave(self.image, self.text)


def interleave(pages: list, queries: list) -> list:
    """[page 0, query 0, page 1, query 1, ...], then whichever list is longer: one batch of both kinds."""
    n = min(len(pages), len(queries))
    return [item for pair in zip(pages, queries) for item in pair] + pages[n:] + queries[n:]


@dataclass
class Comparison:
    """vLLM's per-token vectors against a reference: one row of the parity table."""

    case: str
    reference: str  # "transformers" or "transformers-no-deepstack"
    modality: str  # "text", "image", "image-again" (encoder cache) or "mixed" (pages and queries in one call)
    max_abs: float
    min_cos: float
    same_token_counts: bool
    same_ranking: int  # queries whose MaxSim page order is identical to the reference's
    same_top1: int
    max_score_diff: float


@dataclass
class CaseInfo:
    engine_s: float = 0.0
    # offline: encoder runs while embedding the pages, then the last page again (0: served from the encoder cache)
    encoder_runs: Optional[list] = None
    page_steps: Optional[int] = None  # offline: model forward steps that embedding the pages took (chunked prefill)
    image_tokens: list = field(default_factory=list)
    # per query: tokens vLLM embedded minus the tokens of prefix + text (exactly the processor's count, never twice)
    query_augmentation_tokens: list = field(default_factory=list)
    expected_augmentation_tokens: int = 0
    served_vs_encoded: Optional[float] = None  # max |LLM.score or /score - MaxSim of the served vectors|
    rerank_top2: Optional[list] = None
    ranking_top2: Optional[list] = None


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ParityReport:
    settings: Settings
    comparisons: list = field(default_factory=list)
    infos: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # engines or requests that failed outright
    folders: dict = field(default_factory=dict)  # checkpoint -> folder it was served from

    @property
    def ok(self) -> bool:
        return not self.errors and all(check.ok for check in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def write_json(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    return float(value) if isinstance(value, (int, float)) else str(value)


# ----- references (Transformers) and checkpoints -----
def reference_embeddings(model, processor, queries, pages) -> Embeddings:
    """Per-item unpadded embeddings, as vLLM serves one sequence per request."""
    with torch.no_grad():
        text = [model(**processor.process_queries([query])).embeddings[0] for query in queries]
        image = [model(**processor.process_images([page])).embeddings[0] for page in pages]
    return Embeddings(text, image)


@contextlib.contextmanager
def without_deepstack(model):
    """The vision tower returns no DeepStack features inside this block (what vLLM's Transformers backend serves)."""
    visual = model.vlm.model.visual
    saved = visual.deepstack_visual_indexes
    visual.deepstack_visual_indexes = []
    try:
        yield model
    finally:
        visual.deepstack_visual_indexes = saved


def _model_for(reference: str, settings: Settings):
    from colqwen3.testing.tiny import build_model, tiny_config

    bias = "none" if reference == "nobias" else ("zero" if reference == "zerobias" else "random")
    config = tiny_config(tie_word_embeddings=settings.tie_word_embeddings, embedding_proj_bias=bias != "none")
    return build_model(config, seed=settings.seed, head_bias=bias)


def prepare(settings: Settings, work: Path, processor, queries, pages) -> tuple[dict, dict]:
    """Checkpoint folders {checkpoint: path} and references {reference: Embeddings}, before any engine starts."""
    from colqwen3.testing.tiny import write_checkpoint

    folders, references = {}, {}
    for case in settings.cases:
        _, checkpoint, reference = CASES[case]
        needs_deepstack_free = case in NO_CHANNEL_CASES and "no-deepstack" not in references
        if reference in references and checkpoint in folders and not needs_deepstack_free:
            continue  # cases share checkpoints and references: build each model once
        model = _model_for(reference, settings)
        if reference not in references:
            references[reference] = reference_embeddings(model, processor, queries, pages)
        if needs_deepstack_free:
            with without_deepstack(model):
                references["no-deepstack"] = reference_embeddings(model, processor, queries, pages)
        if checkpoint not in folders:
            # "snapshots/0-<name>": a folder name that is not a Python identifier, as in a Hub cache
            folder = work / "snapshots" / f"0-{checkpoint}-ckpt"
            folders[checkpoint] = write_checkpoint(folder, layout=settings.layout, model=model)
            if checkpoint == "exported":
                prepare_for_vllm_native(folder)
        del model
    gc.collect()
    return folders, references


# ----- vLLM runs -----
def run_offline(case: str, folder, processor, queries, pages, settings: Settings, max_pixels: int):
    """One in-process engine: (Embeddings, `LLM.score` matrix or None, CaseInfo). Known-bad folders are served too:
    showing the bug is what case `native-asis` is for."""
    from colqwen3.serving.inputs import page_input, query_input
    from colqwen3.serving.offline import encode_pages, encode_queries, make_llm, score_pages_with_llm

    route = CASES[case][0]
    start = time.perf_counter()
    chunked = {}
    if settings.max_num_batched_tokens is not None:
        chunked = {"max_num_batched_tokens": settings.max_num_batched_tokens, "enable_chunked_prefill": True}
    llm = make_llm(
        folder,
        route,
        max_model_len=settings.max_model_len,
        dtype="float32",
        max_pixels=max_pixels,
        refuse_known_problems=False,
        deepstack_channels=False if case in NO_CHANNEL_CASES else None,
        enforce_eager=True,
        seed=0,
        **chunked,
    )
    info = CaseInfo()
    try:
        calls = _count_calls(llm)
        queries_embedded = encode_queries(llm, processor, queries)
        before = calls()
        got = Embeddings(queries_embedded, encode_pages(llm, processor, pages))
        after = calls()
        got.image_again = encode_pages(llm, processor, pages[-1:])
        info.encoder_runs = [after["embed_multimodal"] - before["embed_multimodal"]]
        info.encoder_runs.append(calls()["embed_multimodal"] - after["embed_multimodal"])
        info.page_steps = after["forward"] - before["forward"]
        prompts = interleave(
            [page_input(processor, page) for page in pages], [query_input(processor, q) for q in queries]
        )
        got.mixed = [output.outputs.data.float().cpu() for output in llm.encode(prompts, **_ENCODE)]
        served = None
        if settings.score:
            served = torch.tensor([score_pages_with_llm(llm, processor, query, pages) for query in queries])
    finally:
        del llm
        gc.collect()
    info.engine_s = time.perf_counter() - start
    return got, served, info


_ENCODE = {"pooling_task": POOLING_TASK, "use_tqdm": False}


_COUNTED = ("embed_multimodal", "forward")  # encoder runs (only for images not in the encoder cache), model steps


def _count_calls(llm):
    """Count the served model's `_COUNTED` calls; returns a function giving the counts so far. The engine runs in
    this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so the counters are plain attributes."""

    def install(model):
        model.colqwen3_calls = dict.fromkeys(_COUNTED, 0)
        for name in _COUNTED:
            original = getattr(model, name)

            def counting(*args, _name=name, _original=original, **kwargs):
                model.colqwen3_calls[_name] += 1
                return _original(*args, **kwargs)

            setattr(model, name, counting)

    llm.apply_model(install)
    return lambda: llm.apply_model(lambda model: dict(model.colqwen3_calls))[0]


def run_server(case: str, folder, processor, queries, pages, settings: Settings, max_pixels: int):
    """One `vllm serve` subprocess: (Embeddings, `/score` matrix or None, CaseInfo with the `/rerank` top-2)."""
    from colqwen3.serving import client

    route = CASES[case][0]
    work = Path(folder).parent
    template = client.write_page_template(work / "page_template.jinja")
    start = time.perf_counter()
    server = client.VllmServer(
        folder,
        route,
        log_path=work / f"serve-{route}.log",
        max_model_len=settings.max_model_len,
        max_pixels=max_pixels,
        chat_template=template,
        enforce_eager=True,
        deepstack_channels=False if case in NO_CHANNEL_CASES else None,
        offline=True,
    )
    try:
        with server:
            url, name = server.base_url, str(folder)
            got = Embeddings(
                client.embed_queries(url, name, processor, queries), client.embed_pages(url, name, processor, pages)
            )
            got.image_again = client.embed_pages(url, name, processor, pages[-1:])
            info, served = CaseInfo(), None
            if settings.score:
                served = torch.tensor([client.score_pages_over_http(url, name, processor, q, pages) for q in queries])
                reranked = client.rerank_pages_over_http(url, name, processor, queries[0], pages, top_n=2)
                info.rerank_top2 = [index for index, _ in reranked]
    except Exception as error:
        raise RuntimeError(f"{error}\n---- server log (tail) ----\n{server.log_tail()}") from error
    info.engine_s = time.perf_counter() - start
    return got, served, info


# ----- comparison -----
def vector_agreement(got: list, ref: list) -> tuple[float, float, bool]:
    """(max |diff|, min per-token cosine, same token counts) over all items; (inf, -1, False) on a count mismatch."""
    if len(got) != len(ref) or any(a.shape != b.shape for a, b in zip(got, ref)):
        return float("inf"), -1.0, False
    max_abs = max((a - b).abs().max().item() for a, b in zip(got, ref))
    min_cos = min(torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item() for a, b in zip(got, ref))
    return max_abs, min_cos, True


def ranking_agreement(scores: torch.Tensor, ref_scores: torch.Tensor) -> tuple[int, int, float]:
    """(queries with the same full page order, queries with the same top-1 page, max |score diff|)."""
    same_order = int((scores.argsort(dim=-1) == ref_scores.argsort(dim=-1)).all(dim=-1).sum())
    same_top1 = int((scores.argmax(dim=-1) == ref_scores.argmax(dim=-1)).sum())
    return same_order, same_top1, (scores - ref_scores).abs().max().item()


def compare(case: str, got: Embeddings, ref: Embeddings, reference: str, modalities=("text", "image")) -> list:
    """One `Comparison` per modality of `got` against `ref` (and `image-again` / `mixed` where `got` has them)."""
    rows = []
    scores = score_multi_vector(got.text, got.image)
    ranking = ranking_agreement(scores, score_multi_vector(ref.text, ref.image))
    served = {"text": got.text, "image": got.image, "image-again": got.image_again, "mixed": got.mixed}
    expected = {"text": ref.text, "image": ref.image, "image-again": ref.image[-1:], "mixed": ref.interleaved()}
    if "image" in modalities:
        modalities = (*modalities, *(name for name in ("image-again", "mixed") if served[name] is not None))
    for modality in modalities:
        max_abs, min_cos, same_counts = vector_agreement(served[modality], expected[modality])
        rows.append(Comparison(case, reference, modality, max_abs, min_cos, same_counts, *ranking))
    return rows


def case_checks(case: str, rows: list, info: CaseInfo, settings: Settings) -> list:
    """The pass/fail checks of one case (none for `native-asis`, which only reports the bias bug)."""
    if case == "native-asis":
        return []
    checks = []
    for row in rows:
        label = f"{case} {row.modality} vs {row.reference}"
        checks.append(Check(f"{label}: token counts", row.same_token_counts, "identical token counts"))
        exact = row.modality == "text" or case in EXACT_CASES or row.reference == "transformers-no-deepstack"
        if exact:
            mixed = max(settings.text_atol, settings.image_atol)  # pages and queries
            atol = {"text": settings.text_atol, "mixed": mixed}.get(row.modality, settings.image_atol)
            checks.append(Check(f"{label}: max |diff|", row.max_abs <= atol, f"{row.max_abs:.3e} <= {atol:g}"))
    if case in EXACT_CASES:
        checks.append(
            Check(
                f"{case}: MaxSim ranking",
                rows[0].same_ranking == settings.n_queries,
                f"{rows[0].same_ranking}/{settings.n_queries} queries rank pages identically",
            )
        )
    checks.append(
        Check(
            f"{case}: query augmentation tokens",
            set(info.query_augmentation_tokens) == {info.expected_augmentation_tokens},
            f"{info.query_augmentation_tokens} per query, expected {info.expected_augmentation_tokens} each",
        )
    )
    if info.encoder_runs is not None:
        checks.append(
            Check(
                f"{case}: a page again comes from the encoder cache",
                info.encoder_runs[0] > 0 and info.encoder_runs[1] == 0,
                f"encoder runs {info.encoder_runs[0]} for the pages, {info.encoder_runs[1]} for the last page again",
            )
        )
    if info.page_steps is not None and settings.max_num_batched_tokens:
        needed = -(-sum(info.image_tokens) // settings.max_num_batched_tokens)
        checks.append(
            Check(
                f"{case}: chunked prefill",
                info.page_steps >= needed and max(info.image_tokens) > settings.max_num_batched_tokens,
                f"{info.page_steps} steps for pages of {max(info.image_tokens)} tokens in chunks of "
                f"{settings.max_num_batched_tokens} (at least {needed})",
            )
        )
    if info.served_vs_encoded is not None:
        checks.append(
            Check(
                f"{case}: vLLM scores == MaxSim of vLLM vectors",
                info.served_vs_encoded <= settings.score_atol,
                f"{info.served_vs_encoded:.3e} <= {settings.score_atol:g}",
            )
        )
    if info.rerank_top2 is not None:
        checks.append(
            Check(
                f"{case}: /rerank top-2 == /pooling ranking",
                info.rerank_top2 == info.ranking_top2,
                f"{info.rerank_top2} vs {info.ranking_top2}",
            )
        )
    return checks


def augmentation_counts(processor, queries: list, served: list) -> list:
    """Tokens each served query carries beyond `query_prefix + text` (its augmentation tokens)."""
    bare = [
        processor.tokenizer(processor.query_prompt(q, suffix=""), add_special_tokens=False)["input_ids"]
        for q in queries
    ]
    return [item.shape[0] - len(ids) for item, ids in zip(served, bare)]


# ----- the harness -----
def _evaluate(case: str, got: Embeddings, served, info: CaseInfo, references: dict, settings: Settings) -> list:
    """Comparisons of one case against its references; fills `info` with what the checks read."""
    _, _, reference = CASES[case]
    rows = compare(case, got, references[reference], "transformers")
    if case in NO_CHANNEL_CASES:
        rows += compare(case, got, references["no-deepstack"], "transformers-no-deepstack", modalities=("image",))
    info.image_tokens = [item.shape[0] for item in got.image]
    scores = score_multi_vector(got.text, got.image)
    info.ranking_top2 = scores[0].argsort(descending=True)[:2].tolist()
    if served is not None:
        info.served_vs_encoded = (served - scores).abs().max().item()
    return rows


def run_parity(settings: Settings, work: Optional[Path] = None) -> ParityReport:
    """Run every case of `settings` and check it; the checkpoints go to `work` (default: a temporary folder)."""
    unknown = [case for case in settings.cases if case not in CASES]
    if unknown or settings.via not in VIAS:
        raise ValueError(f"unknown cases {unknown} or via {settings.via!r}: cases {tuple(CASES)}, via {VIAS}")
    if not (1 <= settings.n_queries <= len(QUERIES) and 1 <= settings.n_pages <= len(sample_pages())):
        raise ValueError(
            f"n_queries must be 1..{len(QUERIES)} and n_pages 1..4, got {settings.n_queries}, {settings.n_pages}"
        )
    if work is None:
        with tempfile.TemporaryDirectory(prefix="colqwen3_vllm_parity_") as temporary:
            return run_parity(settings, Path(temporary))
    from colqwen3.testing.tiny import build_processor  # transformers loads here, not with `colqwen3 --help`

    processor = build_processor()
    if settings.max_visual_tokens is not None:
        processor.max_num_visual_tokens = settings.max_visual_tokens
    max_pixels = processor.max_num_visual_tokens * processor.tokens_tile**2  # both sides cut pages alike
    queries, pages = list(QUERIES)[: settings.n_queries], sample_pages()[: settings.n_pages]
    folders, references = prepare(settings, Path(work), processor, queries, pages)
    report = ParityReport(settings, folders={name: str(folder) for name, folder in folders.items()})
    runner = run_offline if settings.via == "offline" else run_server
    for case in settings.cases:
        _, checkpoint, _ = CASES[case]
        try:
            got, served, info = runner(case, folders[checkpoint], processor, queries, pages, settings, max_pixels)
        except Exception as error:  # report it and go on with the other cases
            report.errors.append(f"{case}: {type(error).__name__}: {error}")
            continue
        info.query_augmentation_tokens = augmentation_counts(processor, queries, got.text)
        info.expected_augmentation_tokens = processor.num_query_augmentation_tokens
        rows = _evaluate(case, got, served, info, references, settings)
        report.comparisons += rows
        report.infos[case] = info
        report.checks += case_checks(case, rows, info, settings)
    return report


def format_report(report: ParityReport) -> str:
    """The parity table and the checks, as printed by `colqwen3 vllm-check` (a view of the report's data)."""
    settings = report.settings
    chunks = settings.max_num_batched_tokens
    lines = [
        f"{settings.n_queries} queries x {settings.n_pages} pages via {settings.via}, layout {settings.layout}, "
        f"{'tied' if settings.tie_word_embeddings else 'untied'} LM head, fp32"
        + (f", chunked prefill of {chunks} tokens" if chunks else "")
        + "; MaxSim columns compare the score matrices (queries whose page ranking / top-1 page is the same, "
        "largest score difference)",
        f"{'case':24} {'reference':26} {'modality':11} {'max abs diff':>12} {'min cosine':>11} {'same ranking':>12} "
        f"{'same top-1':>10} {'max score diff':>14}",
    ]
    for row in report.comparisons:
        lines.append(
            f"{row.case:24} {row.reference:26} {row.modality:11} {row.max_abs:12.3e} {row.min_cos:11.6f} "
            f"{f'{row.same_ranking}/{settings.n_queries}':>12} {f'{row.same_top1}/{settings.n_queries}':>10} "
            f"{row.max_score_diff:14.3e}"
        )
    for case, info in report.infos.items():
        served = "" if info.served_vs_encoded is None else f"; vLLM scores vs MaxSim {info.served_vs_encoded:.2e}"
        runs = "" if info.encoder_runs is None else "; encoder runs {}, then {}".format(*info.encoder_runs)
        runs += "" if info.page_steps is None else f"; {info.page_steps} steps for the pages"
        lines.append(
            f"{case}: {info.engine_s:.1f} s; visual+text tokens per page {info.image_tokens}; "
            f"augmentation tokens per query {info.query_augmentation_tokens}{served}{runs}"
        )
    lines += [f"[{'PASS' if check.ok else 'FAIL'}] {check.name}: {check.detail}" for check in report.checks]
    lines += [f"[ERROR] {error}" for error in report.errors]
    lines.append("OK" if report.ok else "FAILED")
    return "\n".join(lines)
