"""Put a free-text experiment description into one of the skill's categories.

Used for rows with no category stored (sessions of the skill or of karpathy/autoresearch) and by
the offline agent. Two readings:

- `NAME old -> new` (the offline agent's format, a constant's name): the keyword that ends last in
  the name wins, as the head of a compound does (EMBEDDING_LR is a learning rate, WARMUP_RATIO a
  schedule); a name with no keyword is still a hyperparameter.
- free text: keywords are weighted and summed; ties go to the more specific category.
"""

from __future__ import annotations

import re

from .config import CATEGORIES

__all__ = ["CATEGORIES", "categorize"]

# Most specific first: the order also breaks ties.
_KEYWORDS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    (
        "regularization",
        3,
        (
            "dropout",
            "drop path",
            "droppath",
            "weight decay",
            "wd",
            "label smoothing",
            "l1",
            "l2",
            "regularization",
            "regularisation",
            "regularize",
            "stochastic depth",
            "penalty",
        ),
    ),
    (
        "optimizer",
        3,
        (
            "adam",
            "adamw",
            "sgd",
            "muon",
            "lion",
            "rmsprop",
            "adagrad",
            "adafactor",
            "optimizer",
            "optimiser",
            "optim",
            "momentum",
            "nesterov",
            "betas?",
            "beta1",
            "beta2",
            "eps",
            "epsilon",
            "warmup",
            "warm up",
            "warmdown",
            "warm down",
            "cooldown",
            "schedule",
            "scheduler",
            "cosine",
            "lr decay",
            "linear decay",
            "annealing",
            "grad clip",
            "gradient clipping",
            "clip grad",
            "clipping",
            "ema",
        ),
    ),
    (
        "data",
        3,
        (
            "augment",
            "augmentation",
            "augmentations",
            "augmented",
            "tokenizer",
            "tokenization",
            "vocab",
            "vocab size",
            "dataset",
            "datasets",
            "data",
            "dataloader",
            "shuffle",
            "shuffling",
            "mixup",
            "cutmix",
            "crop",
            "flip",
            "curriculum",
            "samples?",
        ),
    ),
    (
        "architecture",
        2,
        (
            "gelu",
            "relu",
            "relu2",
            "silu",
            "swish",
            "swiglu",
            "geglu",
            "tanh",
            "activation",
            "activations",
            "depth",
            "width",
            "wider",
            "deeper",
            "layers?",
            "n layers?",
            "embd",
            "embedding",
            "embeddings",
            "embed",
            "dim",
            "dims",
            "d model",
            "hidden",
            "hidden size",
            "attention",
            "attn",
            "heads?",
            "n heads?",
            "mlp",
            "ffn",
            "norm",
            "layernorm",
            "rmsnorm",
            "batchnorm",
            "normalization",
            "residual",
            "skip connection",
            "rope",
            "rotary",
            "positional",
            "window",
            "kernel",
            "conv",
            "convolution",
            "channels",
            "transformer",
            "architecture",
            "model size",
            "aspect ratio",
            "tie",
            "tied",
            "untie",
            "blocks?",
            "softcap",
            "logit cap",
        ),
    ),
    (
        "hyperparams",
        2,
        (
            "lr",
            "learning rate",
            "batch size",
            "batch",
            "epochs?",
            "steps?",
            "iterations?",
            "iters",
            "seed",
            "temperature",
            "init",
            "initialization",
            "scale",
            "multiplier",
            "hyperparameters?",
            "time budget",
            "seq len",
            "sequence length",
        ),
    ),
)

_RULES: tuple[tuple[str, int, re.Pattern[str]], ...] = tuple(
    (category, weight, re.compile(r"\b(?:" + "|".join(words) + r")\b")) for category, weight, words in _KEYWORDS
)
_ORDER = {category: i for i, (category, _, _) in enumerate(_KEYWORDS)}

_CONSTANT_CHANGE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s+\S+\s*->\s*\S+")


def _normalize(text: str) -> str:
    text = text.replace("->", " ")
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # warmupSteps -> warmup Steps
    return re.sub(r"[_\-./]+", " ", text).lower()


def _by_head(name: str) -> str | None:
    words = _normalize(name)
    best: tuple[int, int, str] | None = None
    for category, _, pattern in _RULES:
        for match in pattern.finditer(words):
            key = (match.end(), -_ORDER[category], category)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2] if best else None


def _by_score(text: str) -> str | None:
    words = _normalize(text)
    scores: dict[str, int] = {}
    for category, weight, pattern in _RULES:
        hits = len(pattern.findall(words))
        if hits:
            scores[category] = hits * weight
    if not scores:
        return None
    return max(scores, key=lambda c: (scores[c], -_ORDER[c]))


def categorize(description: str) -> str:
    """hyperparams, architecture, optimizer, regularization, data or other."""
    change = _CONSTANT_CHANGE.match(description)
    if change:
        return _by_head(change.group(1)) or "hyperparams"
    return _by_score(description) or "other"
