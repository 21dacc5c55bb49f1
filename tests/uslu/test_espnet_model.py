"""The model's loss and task routing."""

import pytest
import torch
from espnet2.legacy.nets.pytorch_backend.transformer.label_smoothing_loss import (
    LabelSmoothingLoss,
)
from tiny import TINY_DIMS

from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.uslu.espnet_model import ESPnetUSLUModel, TaskRoutingError
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder
from espnet_pruning.whisper.tokenizer import WhisperTokenizer, build_token_list

REG = TaskRegistry.load().subset(["ic_fsc", "er_iemocap"])
TOKENS = build_token_list(REG.added_tokens())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    tok = WhisperTokenizer(TOKENS)
    enc = WhisperEncoder(whisper_dims=TINY_DIMS)
    dec = WhisperDecoder(len(TOKENS), 32, whisper_dims=TINY_DIMS)
    prompts = {t.name: tok.tokens2ids(t.prompt) for t in REG}
    return ESPnetUSLUModel(len(TOKENS), TOKENS, enc, dec, prompts)


@pytest.mark.parametrize("normalize", [False, True])
def test_loss_equals_espnet_label_smoothing_loss_without_smoothing(model, normalize):
    torch.manual_seed(1)
    logits = torch.randn(3, 5, len(TOKENS))
    target = torch.randint(0, 50000, (3, 5))
    target[1, 3:] = -1
    ref = LabelSmoothingLoss(len(TOKENS), -1, 0.0, normalize_length=normalize)
    model.length_normalized_loss = normalize
    try:
        assert torch.allclose(model.attention_loss(logits, target), ref(logits, target))
    finally:
        model.length_normalized_loss = False


def test_tasks_of_batch(model):
    tok = WhisperTokenizer(TOKENS)
    fsc = tok.tokens2ids(REG["ic_fsc"].prompt)
    er = tok.tokens2ids(REG["er_iemocap"].prompt)
    prompt = torch.tensor([fsc, er, fsc])
    assert model.tasks_of_batch(prompt, torch.tensor([3, 3, 3])) == [
        "ic_fsc",
        "er_iemocap",
        "ic_fsc",
    ]
    with pytest.raises(TaskRoutingError, match="belong to no task"):
        model.tasks_of_batch(torch.tensor([[50259, 50259, 50259]]), torch.tensor([3]))


def test_forward_returns_espnet_triple(model):
    tok = WhisperTokenizer(TOKENS)
    fsc = tok.tokens2ids(REG["ic_fsc"].prompt)
    text = torch.tensor([fsc + [50363, 318], fsc + [50363, -1]])
    loss, stats, weight = model(
        torch.randn(2, 8000),
        torch.tensor([8000, 6000]),
        text,
        torch.tensor([5, 4]),
        prompt=torch.tensor([fsc, fsc]),
        prompt_lengths=torch.tensor([3, 3]),
    )
    assert loss.numel() == 1 and torch.isfinite(loss).all()  # gatherable shape (1,)
    assert set(stats) == {"loss", "acc"} and int(weight) == 2
