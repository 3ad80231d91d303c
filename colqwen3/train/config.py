"""`TrainConfig`: every setting of a training run, with the published ColQwen3 recipe as defaults (no heavy imports,
so `colqwen3 train --help` stays fast)."""

from dataclasses import dataclass, field
from typing import Optional

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LOSSES = ("infonce", "pairwise", "hard-negatives")


@dataclass
class TrainConfig:
    """Every knob of a run; the defaults are the published ColQwen3 recipe (colpali-engine 0.3.18)."""

    model: str
    data: object
    output_dir: str
    eval_data: object = None
    split: str = "train"
    eval_split: str = "test"
    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    full_finetune: bool = False
    learning_rate: float = 2e-4
    warmup_steps: int = 100
    epochs: float = 5.0
    max_steps: int = -1
    batch_size: int = 64
    gradient_accumulation_steps: int = 1
    loss: str = "infonce"
    temperature: float = 0.02
    pairwise_temperature: float = 1.0
    normalize_scores: bool = True
    hard_negatives: int = 0
    hard_negative_weight: float = 0.5
    max_visual_tokens: int = 768
    gradient_checkpointing: bool = True
    bf16: Optional[bool] = None  # None: bf16 weights on CUDA, float32 on CPU
    attn_implementation: Optional[str] = None  # None: FlashAttention 2 on CUDA when installed, else sdpa
    seed: int = 0
    head_seed: int = 0
    embed_dim: int = 320
    logging_steps: int = 10
    save_steps: int = 500
    eval_steps: Optional[int] = None
    save_total_limit: Optional[int] = 2
    report_to: list = field(default_factory=lambda: ["none"])
    resume: bool = False
    deepspeed: Optional[str] = None
    fsdp: str = ""

    def check(self) -> None:
        """Raise `ValueError` naming the first bad setting."""
        positive = ("lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps", "max_visual_tokens")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("learning_rate", "temperature", "pairwise_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)!r}.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {self.loss!r}.")
        if (self.loss == "hard-negatives") != (self.hard_negatives > 0):
            raise ValueError("loss 'hard-negatives' and `hard_negatives` > 0 go together "
                             f"(got loss {self.loss!r}, hard_negatives {self.hard_negatives}).")  # fmt: skip
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError(f"give a positive `epochs` or `max_steps`, got {self.epochs!r} and {self.max_steps!r}.")
