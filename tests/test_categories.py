from __future__ import annotations

import pytest
from autoresearch.core import config
from autoresearch.core.categories import CATEGORIES, categorize


def test_categories_are_the_configs() -> None:
    assert CATEGORIES == config.CATEGORIES
    assert set(CATEGORIES) == {"hyperparams", "architecture", "optimizer", "regularization", "data", "other"}


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        # the offline agent's format: the constant's name decides, by its last keyword
        ("LEARNING_RATE 0.02 -> 0.04", "hyperparams"),
        ("EMBEDDING_LR 0.6 -> 0.9", "hyperparams"),
        ("TOTAL_BATCH_SIZE 524288 -> 262144", "hyperparams"),
        ("WARMUP_RATIO 0.0 -> 0.1", "optimizer"),
        ("WEIGHT_DECAY 0.0 -> 0.1", "regularization"),
        ("DROPOUT 0.1 -> 0.2", "regularization"),
        ("HEAD_DIM 128 -> 64", "architecture"),
        ("n_layer 8 -> 12", "architecture"),
        ("ADAM_BETA1 0.8 -> 0.9", "optimizer"),
        ("SOME_CONSTANT 3 -> 4", "hyperparams"),
        # free text
        ("increase LR to 0.04", "hyperparams"),
        ("halve the batch size", "hyperparams"),
        ("switch to GeLU activation", "architecture"),
        ("reduce depth to 6 layers", "architecture"),
        ("double model width (OOM)", "architecture"),
        ("more attention heads", "architecture"),
        ("use Adam with momentum 0.9", "optimizer"),
        ("cosine schedule with warmup", "optimizer"),
        ("longer LR warmup", "optimizer"),
        ("add dropout 0.1 after attention", "regularization"),
        ("weight decay in AdamW", "regularization"),
        ("augment with random crops", "data"),
        ("train a new tokenizer", "data"),
        ("shuffle the data every epoch", "data"),
        ("refactor for readability", "other"),
        ("", "other"),
    ],
)
def test_categorize(description: str, expected: str) -> None:
    assert categorize(description) == expected


def test_every_answer_is_a_category() -> None:
    for text in ["baseline", "x -> y", "GELU", "lr", "???", "Dropout", "WARMUP"]:
        assert categorize(text) in CATEGORIES
