"""Masked forward out of place, update restriction, repair after averaging.

Property numbers (``# P8``) are those of docs/pruning_pitfalls.md §9.
"""

import copy
import pickle

import pytest
import torch
from pruning_testlib import random_mask, tiny_whisper, whisper_batch, whisper_loss
from torch import nn

from espnet_pruning.pruning.apply import (
    UpdateRestriction,
    call_with_masks,
    masked_parameters,
    restore_frozen,
)
from espnet_pruning.pruning.masks import MaskError, MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import prune_global_magnitude


def _setup(seed=0):
    model = tiny_whisper(seed)
    ms = MaskSet.from_model(model, PruningScope(), ["a", "b"])
    params = dict(model.named_parameters())
    ms.set_mask("a", random_mask({n: params[n] for n in ms.names}, 0.5, seed=1))
    ms.set_mask("b", random_mask({n: params[n] for n in ms.names}, 0.3, seed=2))
    return model, ms


def _zeroed_copy(model, mask):
    twin = copy.deepcopy(model)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for n, m in mask.items():
            params[n].masked_fill_(~m, 0.0)
    return twin


def _grads(model):
    return {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def test_masked_forward_equals_zeroed_weights_and_masks_gradients():  # P10
    model, ms = _setup()
    mel, tokens, targets = whisper_batch(model)
    mask = ms.mask("a")
    out = call_with_masks(model, mask, mel, tokens)
    whisper_loss(out, targets).backward()
    twin = _zeroed_copy(model, mask)
    ref = twin(mel, tokens)
    whisper_loss(ref, targets).backward()
    # The tied embedding/output layer is masked in both of its uses.
    assert torch.equal(out, ref)
    grads, ref_grads = _grads(model), _grads(twin)
    for n, m in mask.items():
        assert bool((grads[n][~m] == 0).all()), n
        assert torch.allclose(grads[n][m], ref_grads[n][m], atol=1e-6), n
    assert (grads["decoder.token_embedding.weight"] != 0).any()


def test_identity_mask_is_a_no_op():  # P9
    model, ms = _setup()
    mel, tokens, targets = whisper_batch(model)
    twin = copy.deepcopy(model)
    out = call_with_masks(
        model, MaskSet.from_model(model, PruningScope(), ["x"]).mask("x"), mel, tokens
    )
    ref = twin(mel, tokens)
    assert torch.equal(out, ref)
    whisper_loss(out, targets).backward()
    whisper_loss(ref, targets).backward()
    grads, ref_grads = _grads(model), _grads(twin)
    assert grads.keys() == ref_grads.keys()
    assert all(torch.equal(grads[n], ref_grads[n]) for n in grads)


def test_model_untouched_copyable_and_keys_unchanged():  # P11, P17
    model, ms = _setup()
    keys = list(model.state_dict())
    ids = [id(p) for p in model.parameters()]
    values = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mel, tokens, targets = whisper_batch(model)
    for task in ms.tasks:
        call_with_masks(model, ms.mask(task), mel, tokens)
    assert list(model.state_dict()) == keys
    assert all(torch.equal(v, values[k]) for k, v in model.state_dict().items())
    assert [id(p) for p in model.parameters()] == ids
    assert [id(p) for p in opt.param_groups[0]["params"]] == ids
    clone = copy.deepcopy(model)
    pickled = pickle.loads(pickle.dumps(model))
    for other in (clone, pickled):
        assert torch.equal(
            call_with_masks(other, ms.mask("a"), mel, tokens),
            call_with_masks(model, ms.mask("a"), mel, tokens),
        )
    # A step through the masked forward updates the live parameters.
    whisper_loss(call_with_masks(model, ms.mask("a"), mel, tokens), targets).backward()
    opt.step()
    assert not torch.equal(
        model.decoder.token_embedding.weight, values["decoder.token_embedding.weight"]
    )


def test_mask_errors_name_the_tensor():  # P14
    model, _ = _setup()
    with pytest.raises(MaskError, match="unknown parameters.*nope"):
        masked_parameters(model, {"nope": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(MaskError, match="encoder.conv1.weight.*shape"):
        masked_parameters(
            model, {"encoder.conv1.weight": torch.ones(3, dtype=torch.bool)}
        )


def test_rewind_gives_theta0_times_mask():  # P7
    model, ms = _setup()
    theta0 = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    mel, tokens, targets = whisper_batch(model)
    mask = ms.mask("a")
    for _ in range(2):
        opt.zero_grad()
        whisper_loss(call_with_masks(model, mask, mel, tokens), targets).backward()
        opt.step()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    mask = prune_global_magnitude(weights, mask, 0.2)
    model.load_state_dict(theta0)
    eff = masked_parameters(model, mask)
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.equal(eff[n], torch.where(mask[n], theta0[n], 0.0)), n
        else:
            assert torch.equal(p, theta0[n]), n


def _optimizer(kind, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
    if kind == "adam":
        return torch.optim.Adam(params, lr=1e-2, weight_decay=1e-3)
    return torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01)


def _train(model, opt, mask, steps, *, sched=None, restriction=None, accum=2, clip=1.0):
    mel, tokens, targets = whisper_batch(model, batch=4)
    for _ in range(steps):
        opt.zero_grad()
        for i in range(accum):  # gradient accumulation over micro-batches
            sl = slice(2 * i, 2 * i + 2)
            out = (
                call_with_masks(model, mask, mel[sl], tokens[sl])
                if mask
                else model(mel[sl], tokens[sl])
            )
            (whisper_loss(out, targets[sl]) / accum).backward()
        if restriction is not None:
            restriction.mask_gradients()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("unmasked_update", ["freeze", "allow"])
def test_update_restriction_holds_bit_for_bit(kind, unmasked_update):  # P8, P13a
    model, ms = _setup()
    opt = _optimizer(kind, model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    # Moments built up BEFORE the restriction starts (the Adam-momentum leak).
    _train(model, opt, None, 2, sched=sched)
    mask = ms.mask("a")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with UpdateRestriction(
        dict(model.named_parameters()), [opt], unmasked_update=unmasked_update
    ) as r:
        r.set_trainable(mask)
        _train(model, opt, mask, 3, sched=sched, restriction=r)
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.equal(p[~mask[n]], before[n][~mask[n]]), n
            moved = (p[mask[n]] != before[n][mask[n]]).float().mean()
            assert moved > 0.5, (n, moved)  # non-vacuity: trainable entries did move
        elif unmasked_update == "freeze":
            assert torch.equal(p, before[n]), n
    unmasked = [n for n, _ in model.named_parameters() if n not in mask]
    changed = [
        n
        for n in unmasked
        if not torch.equal(dict(model.named_parameters())[n], before[n])
    ]
    assert (changed == []) == (unmasked_update == "freeze")


def test_without_restriction_masked_gradients_leak():
    # Non-vacuity of the test above: masking gradients alone lets Adam/AdamW move
    # entries outside the mask (docs/pruning_pitfalls.md §2).
    model, ms = _setup()
    opt = _optimizer("adamw", model.parameters())
    _train(model, opt, None, 1)
    mask = ms.mask("a")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, opt, mask, 2)
    p = dict(model.named_parameters())["encoder.blocks.0.mlp.0.weight"]
    m = mask["encoder.blocks.0.mlp.0.weight"]
    assert (p[~m] != before["encoder.blocks.0.mlp.0.weight"][~m]).float().mean() > 0.9


def test_restriction_with_autocast_and_grad_scaler():
    model, ms = _setup()
    opt = _optimizer("adamw", model.parameters())
    try:
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    except (AttributeError, RuntimeError, TypeError) as e:  # pragma: no cover
        pytest.skip(f"no CPU GradScaler in this torch: {e}")
    _train(model, opt, None, 1)
    mask = ms.mask("b")
    mel, tokens, targets = whisper_batch(model)
    r = UpdateRestriction(
        dict(model.named_parameters()), [opt], unmasked_update="freeze"
    )
    r.set_trainable(mask)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(3):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = whisper_loss(
                call_with_masks(model, mask, mel, tokens).float(), targets
            )
        if step == 1:
            loss = loss * float("inf")  # the scaler skips this step: no hook, no move
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
        scaler.step(opt)
        scaler.update()
        if step == 1:
            assert all(torch.equal(p, snapshot[n]) for n, p in model.named_parameters())
    r.remove()
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.equal(p[~mask[n]], before[n][~mask[n]]), n
            assert (p[mask[n]] != before[n][mask[n]]).any(), n
        else:
            assert torch.equal(p, before[n]), n


def test_restriction_survives_load_state_dict_and_stores_only_tensors(tmp_path):
    model, ms = _setup()
    opt = _optimizer("adam", model.parameters())
    _train(model, opt, None, 1)
    r = UpdateRestriction(dict(model.named_parameters()), [opt])
    r.set_trainable(ms.mask("a"))
    torch.save(opt.state_dict(), tmp_path / "opt.pth")
    opt.load_state_dict(torch.load(tmp_path / "opt.pth", weights_only=True))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, opt, ms.mask("a"), 1)
    for n, m in ms.mask("a").items():
        assert torch.equal(dict(model.named_parameters())[n][~m], before[n][~m])
    torch.save(opt.state_dict(), tmp_path / "opt2.pth")
    torch.load(tmp_path / "opt2.pth", weights_only=True)


def test_set_trainable_validation_and_lifting():  # P14, P15
    model, ms = _setup()
    opt = _optimizer("adamw", model.parameters())
    r = UpdateRestriction(
        dict(model.named_parameters()), [opt], unmasked_update="freeze"
    )
    assert not r.active
    r.set_trainable(ms.mask("a"))
    with pytest.raises(MaskError, match="nope"):
        r.set_trainable({**ms.mask("b"), "nope": torch.ones(1)})
    with pytest.raises(MaskError, match="other than 0 and 1"):
        r.set_trainable({"encoder.conv1.weight": torch.full((16, 80, 3), 0.5)})
    # The previous restriction is still in force.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train(model, opt, ms.mask("a"), 1)
    m = ms.mask("a")["encoder.conv2.weight"]
    assert torch.equal(
        model.encoder.conv2.weight[~m], before["encoder.conv2.weight"][~m]
    )
    assert torch.equal(
        model.decoder.positional_embedding, before["decoder.positional_embedding"]
    )
    r.set_trainable(None)
    assert not r.active
    _train(model, opt, None, 1)
    assert not torch.equal(
        model.decoder.positional_embedding, before["decoder.positional_embedding"]
    )
    r.remove()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    with pytest.raises(ValueError, match="unmasked_update"):
        UpdateRestriction(dict(model.named_parameters()), [opt], unmasked_update="keep")


def test_disjoint_task_unaffected_by_continual_update():  # P13 b, c
    model, ms = _setup()
    params = dict(model.named_parameters())
    names = ms.names
    # Two disjoint halves, plus an overlapping mask.
    half = {
        n: (torch.arange(params[n].numel()) % 2 == 0).view(params[n].shape)
        for n in names
    }
    other = {n: ~half[n] for n in names}
    overlap = {n: torch.ones_like(half[n]) for n in names}
    mel, tokens, _ = whisper_batch(model, seed=5)
    opt = _optimizer("adamw", model.parameters())
    _train(model, opt, None, 1)  # moments everywhere
    with torch.no_grad():
        out_other = call_with_masks(model, other, mel, tokens)
        out_overlap = call_with_masks(model, overlap, mel, tokens)
    with UpdateRestriction(params, [opt], unmasked_update="freeze") as r:
        r.set_trainable(half)
        _train(model, opt, half, 2, restriction=r)
    with torch.no_grad():
        assert torch.allclose(
            call_with_masks(model, other, mel, tokens), out_other, atol=0, rtol=0
        )
        assert not torch.allclose(
            call_with_masks(model, overlap, mel, tokens), out_overlap
        )


def test_restore_frozen_and_espnet_averaging(tmp_path):  # P19
    from espnet2.main_funcs.average_nbest_models import average_nbest_models
    from espnet2.train.reporter import Reporter

    model, ms = _setup()
    mask = ms.mask("a")
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    reporter = Reporter()
    g = torch.Generator().manual_seed(0)
    for epoch, acc in zip((1, 2, 3), (0.5, 0.7, 0.6)):
        state = {k: v.clone() for k, v in reference.items()}
        for n, m in mask.items():  # training moved only trainable entries
            state[n] = torch.where(
                m, state[n] + 0.01 * torch.randn(m.shape, generator=g), state[n]
            )
        torch.save(state, tmp_path / f"{epoch}epoch.pth")
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"acc": acc})
            sub.next()
    average_nbest_models(tmp_path, reporter, [("valid", "acc", "max")], nbest=3)
    avg = torch.load(tmp_path / "valid.acc.ave_3best.pth", weights_only=True)
    # The masks are not in the state dict: the keys are exactly the model's.
    assert set(avg) == set(model.state_dict())
    # Averaging three identical fp32 values is not always the identity.
    drift = sum(int((avg[n][~m] != reference[n][~m]).sum()) for n, m in mask.items())
    assert drift > 0
    fixed = restore_frozen(avg, reference, mask)
    for n, m in mask.items():
        assert torch.equal(fixed[n][~m], reference[n][~m]), n
        assert torch.equal(fixed[n][m], avg[n][m]), n
    for k in avg:
        if k not in mask:
            assert torch.equal(fixed[k], reference[k]), k
    assert fixed["encoder.conv1.weight"] is not avg["encoder.conv1.weight"]
    kept = restore_frozen(avg, reference, mask, unmasked_update="allow")
    assert torch.equal(kept["decoder.ln.weight"], avg["decoder.ln.weight"])
    model.load_state_dict(fixed, strict=True)
    with pytest.raises(ValueError, match="reference state has no entries"):
        restore_frozen(avg, {}, mask)
