"""The model under an S3-Router score router: routed forward, gradients, lazy init."""

import pytest
import torch
from tiny import TINY_DIMS

from espnet_pruning.pruning.s3_router import (
    S3RouterHparams,
    init_scores,
    score_generator,
)
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.train.s3_router_training import (
    TaskScoreRouter,
    freeze_for_routing,
    score_state_key,
)
from espnet_pruning.uslu.espnet_model import ESPnetUSLUModel
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder
from espnet_pruning.whisper.tokenizer import WhisperTokenizer, build_token_list

REG = TaskRegistry.load().subset(["ic_fsc", "er_iemocap"])
TOKENS = build_token_list(REG.added_tokens())


def build(keep_ratio=0.5, init="wmi", modules="both"):
    torch.manual_seed(0)
    tok = WhisperTokenizer(TOKENS)
    enc = WhisperEncoder(whisper_dims=TINY_DIMS)
    dec = WhisperDecoder(len(TOKENS), 32, whisper_dims=TINY_DIMS)
    prompts = {t.name: tok.tokens2ids(t.prompt) for t in REG}
    model = ESPnetUSLUModel(len(TOKENS), TOKENS, enc, dec, prompts)
    router = TaskScoreRouter(
        S3RouterHparams(keep_ratio=keep_ratio, init=init, modules=modules)
    )
    for task in ("ic_fsc", "er_iemocap"):
        router.add_task(task, model)
    model.attach_score_router(router)
    freeze_for_routing(model, router, ["ic_fsc", "er_iemocap"])
    return model, router


def batch(task="ic_fsc"):
    tok = WhisperTokenizer(TOKENS)
    p = tok.tokens2ids(REG[task].prompt)
    torch.manual_seed(1)
    return dict(
        speech=torch.randn(2, 8000),
        speech_lengths=torch.tensor([8000, 6000]),
        text=torch.tensor([p + [50363, 318], p + [50363, -1]]),
        text_lengths=torch.tensor([5, 4]),
        prompt=torch.tensor([p, p]),
        prompt_lengths=torch.tensor([3, 3]),
    )


def test_state_dict_adds_only_score_router_keys():
    model, router = build()
    keys = list(model.state_dict())
    extra = [k for k in keys if k.startswith("score_router.")]
    assert sorted(extra) == sorted(
        ["score_router.initialised.ic_fsc", "score_router.initialised.er_iemocap"]
        + [score_state_key(t, n) for t in router.tasks for n in router.routed_names(t)]
    )
    assert all(k.startswith(("encoder.", "decoder.", "score_router.")) for k in keys)


def test_first_forward_initialises_from_the_current_weights_once():
    model, router = build()
    name = router.routed_names("ic_fsc")[0]
    params = dict(model.named_parameters())
    with torch.no_grad():  # weights loaded after build (as --init_param does)
        params[name].mul_(3.0)
    assert not router.is_initialised("ic_fsc")
    model(**batch())
    assert router.is_initialised("ic_fsc") and router.is_initialised("er_iemocap")
    expected = init_scores(params[name], "wmi", score_generator(0, name))
    assert torch.equal(router.scores("er_iemocap")[name].detach(), expected)
    with torch.no_grad():
        router.scores("er_iemocap")[name].add_(1.0)
    model(**batch())  # flags set: no re-initialisation
    assert torch.equal(router.scores("er_iemocap")[name].detach(), expected + 1.0)


def test_forward_uses_the_tasks_masked_weights_and_trains_only_its_scores():
    model, router = build()
    loss, _, _ = model(**batch("ic_fsc"))
    loss.backward()
    # Only the batch's task's scores get a gradient; no weight does.
    assert all(
        p.grad is None for n, p in model.named_parameters() if "score_router" not in n
    )
    assert all(s.grad is not None for s in router.scores("ic_fsc").values())
    assert all(s.grad is None for s in router.scores("er_iemocap").values())
    # The same loss as the dense model with m_t ⊙ θ written into the weights.
    masks = router.masks("ic_fsc")
    params = dict(model.named_parameters())
    ref = ESPnetUSLUModel(
        model.vocab_size,
        model.token_list,
        model.encoder,
        model.decoder,
        {t: list(p) for p, t in model.prompt_to_task.items()},
    )
    saved = {n: params[n].detach().clone() for n in masks}
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m)
    try:
        with torch.no_grad():
            dense, _, _ = ref(**batch("ic_fsc"))
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                params[n].copy_(v)
    assert torch.equal(loss.detach(), dense)
    # Half of every routed tensor is dropped, so routing changes the loss.
    with torch.no_grad():
        unrouted, _, _ = ref(**batch("ic_fsc"))
    assert not torch.equal(loss.detach(), unrouted)
    for n, m in masks.items():
        assert int(m.sum()) == round(0.5 * m.numel())


def test_s3_router_and_masked_training_exclude_each_other():
    model, router = build()
    model.score_router = None
    model.masked_training = object()  # any non-None value
    with pytest.raises(ValueError, match="exclude each other"):
        model.attach_score_router(router)
    model.__dict__["_masked_training"] = None
