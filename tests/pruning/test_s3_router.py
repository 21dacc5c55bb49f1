"""S3-Router score routing (espnet_pruning.pruning.s3_router; docs/methods.md §5).

The tiny-model checks of the method's spec: exact top-k counts with deterministic ties,
the straight-through gradient against an independent computation, frozen weights, ORI's
order and multiset, keep = 1 reproducing the dense model, zero interference between
tasks, and WMI without updates equal to magnitude pruning.
"""

import argparse
import math
from fractions import Fraction

import pytest
import torch
from pruning_testlib import tiny_whisper, whisper_batch, whisper_loss
from torch import nn

from espnet_pruning.pruning.masks import MaskError, MaskSet
from espnet_pruning.pruning.s3_router import (
    S3RouterHparams,
    ScoreRouter,
    init_scores,
    num_kept,
    routed_parameter_names,
    score_generator,
    straight_through_topk,
    topk_masks,
)
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import (
    prune_global_magnitude,
    prune_layerwise_magnitude,
)

FFN = [
    f"{side}.blocks.{i}.mlp.{j}.weight"
    for side in ("decoder", "encoder")
    for i in (0, 1)
    for j in (0, 2)
]
ATTN = [
    f"{side}.blocks.{i}.{attn}.{proj}.weight"
    for side, attns in (("decoder", ("attn", "cross_attn")), ("encoder", ("attn",)))
    for i in (0, 1)
    for attn in attns
    for proj in ("query", "key", "value", "out")
]


@pytest.fixture(scope="module")
def model():
    return tiny_whisper()


@pytest.fixture(scope="module")
def batch(model):
    return whisper_batch(model)


@pytest.fixture(autouse=True)
def clear_grads(model):
    model.zero_grad(set_to_none=True)
    yield
    model.zero_grad(set_to_none=True)


def expected_kept(n, keep):
    """round(keep · n), half to even, keep read as its decimal (independent oracle)."""
    return round(Fraction(repr(keep)) * n)


def oracle_masks(scores, keep, scope):
    """Top-k of |s| by sorting (|s|, name position, flat index) in plain Python."""
    names = sorted(scores)
    groups = [names] if scope == "global" else [[n] for n in names]
    out = {}
    for group in groups:
        entries = sorted(
            (abs(v), g, i)
            for g, n in enumerate(group)
            for i, v in enumerate(scores[n].detach().flatten().tolist())
        )
        drop = len(entries) - expected_kept(len(entries), keep)
        dropped = {(g, i) for _, g, i in entries[:drop]}
        for g, n in enumerate(group):
            flat = [(g, i) not in dropped for i in range(scores[n].numel())]
            out[n] = torch.tensor(flat).view(scores[n].shape)
    return out


def set_integer_scores(router, task, seed=0):
    """Scores in {-2, ..., 2}: many ties, within and across tensors, both signs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in router.scores(task).values():
            s.copy_(torch.randint(-2, 3, s.shape, generator=g).float())


def adam_steps(router, task, model, batch, steps=3, lr=1e-2):
    mel, tokens, targets = batch
    opt = torch.optim.Adam(router.scores(task).values(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        whisper_loss(router(model, task, mel, tokens), targets).backward()
        opt.step()


# --------------------------------------------------------------------- counts and ties
def test_num_kept_rounds_half_to_even():
    assert [num_kept(5, 0.5), num_kept(5, 0.9), num_kept(5, 0.3)] == [2, 4, 2]
    assert [num_kept(7, 0.5), num_kept(1024, 0.9), num_kept(3, 1.0)] == [4, 922, 3]


def test_topk_masks_exact_ties_per_tensor_and_global():
    s = {
        "b": torch.tensor([[1.0, -1.0], [0.0, 2.0]]),
        "a": torch.tensor([1.0, 1.0, -1.0, 0.0, 2.0]),
    }
    per = topk_masks(s, 0.6)
    # a: keep round(3.0) = 3, drop 0 then the first |1|; b: keep round(2.4) = 2.
    assert per["a"].tolist() == [False, True, True, False, True]
    assert per["b"].tolist() == [[False, True], [False, True]]
    glob = topk_masks(s, 0.6, "global")
    # 9 entries, keep round(5.4) = 5: drop both zeros, then |1| in a (name order) first.
    assert glob["a"].tolist() == [False, False, True, False, True]
    assert glob["b"].tolist() == [[True, True], [False, True]]
    # Half-integer counts round to even: 0.5 · 5 = 2.5 → 2, 0.9 · 5 = 4.5 → 4.
    assert int(topk_masks({"a": s["a"]}, 0.5)["a"].sum()) == 2
    assert int(topk_masks({"a": s["a"]}, 0.9)["a"].sum()) == 4


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.37, 0.05])
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
def test_router_masks_have_exact_counts_with_ties(model, keep, scope):
    # P1, P2: exact counts; ties broken by (sorted name, flat index).
    router = ScoreRouter(S3RouterHparams(keep_ratio=keep, modules="both", scope=scope))
    router.add_task("a", model)
    set_integer_scores(router, "a")
    masks = router.masks("a")
    scores = router.scores("a")
    assert list(masks) == sorted(FFN + ATTN)
    if scope == "per_tensor":
        for n, m in masks.items():
            assert int(m.sum()) == expected_kept(m.numel(), keep), n
    else:
        total = sum(m.numel() for m in masks.values())
        assert total == 8 * 1024 + 24 * 256
        assert sum(int(m.sum()) for m in masks.values()) == expected_kept(total, keep)
    oracle = oracle_masks(scores, keep, scope)
    for n in masks:
        assert torch.equal(masks[n], oracle[n]), n


def test_global_scope_ranks_across_tensors(model):
    router = ScoreRouter(
        S3RouterHparams(keep_ratio=0.5, modules="ffn", scope="global", init="ri")
    )
    router.add_task("a", model)
    with torch.no_grad():  # decoder FFN scores all 1, encoder FFN scores all -3
        for n, s in router.scores("a").items():
            s.fill_(1.0 if n.startswith("decoder") else -3.0)
    kept = {n: int(m.sum()) for n, m in router.masks("a").items()}
    assert kept == {n: 0 if n.startswith("decoder") else 1024 for n in FFN}


# --------------------------------------------------------------------- gradient
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
def test_ste_gradient_is_sign_times_weight_times_weff_gradient(model, batch, scope):
    mel, tokens, targets = batch
    router = ScoreRouter(
        S3RouterHparams(keep_ratio=0.5, modules="both", init="ri", scope=scope)
    )
    router.add_task("a", model)
    whisper_loss(router(model, "a", mel, tokens), targets).backward()

    # Independently: autograd on explicit W_eff leaves with the same binary masks.
    params = dict(model.named_parameters())
    masks = router.masks("a")
    weff = {
        n: (m.float() * params[n].detach()).requires_grad_() for n, m in masks.items()
    }
    out = torch.func.functional_call(model, weff, (mel, tokens))
    whisper_loss(out, targets).backward()

    n_dropped = n_dropped_nonzero = n_connected = n_negative = 0
    for n, s in router.scores("a").items():
        expected = torch.sign(s.detach()) * (weff[n].grad * params[n].detach())
        # Bit-exact: the same forward values give the same dL/dW_eff, and the STE
        # path multiplies it by theta and then by +-1 (exact), as the formula does.
        assert torch.equal(s.grad, expected), n
        dropped = ~masks[n]
        n_dropped += int(dropped.sum())
        n_dropped_nonzero += int((s.grad[dropped] != 0).sum())
        n_connected += int((weff[n].grad[dropped] != 0).sum())
        n_negative += int((s.detach() < 0).sum())
    assert n_dropped == (8 * 1024 + 24 * 256) // 2
    # Every dropped score whose weight still affects the loss gets a gradient. The
    # global top-k here drops whole columns of some mlp.2, disconnecting hidden units:
    # their mlp.0 rows have dL/dW_eff = 0 exactly. Nothing else is zero.
    assert n_dropped_nonzero == n_connected
    disconnected = 0  # dropped mlp.0 entries of hidden units no mlp.2 weight reads
    for n in FFN:
        if n.endswith("mlp.0.weight"):
            dead = ~masks[n.replace("mlp.0", "mlp.2")].any(0)
            disconnected += int((~masks[n])[dead].sum())
    assert n_dropped - n_connected == disconnected
    assert disconnected == (0 if scope == "per_tensor" else 39)
    assert n_negative > 0  # the sign factor is exercised


def test_straight_through_topk_gradient_and_zero_score():
    s = torch.tensor([[0.5, -3.0], [0.0, 2.0]], requires_grad=True)
    m = straight_through_topk({"s": s}, 0.5)["s"]
    assert m.dtype == torch.float32 and m.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    (m * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    # sign(S) ⊙ dL/dm, and sign(0) = 0: a score at exactly 0 gets no gradient.
    assert s.grad.tolist() == [[1.0, -2.0], [0.0, 4.0]]


def test_shared_weights_get_no_gradient_and_stay_bit_identical(model, batch):
    # P8 for S3-Router: no entry of the shared weights may change.
    mel, tokens, targets = batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(p.requires_grad for p in model.parameters())
    router = ScoreRouter(S3RouterHparams(keep_ratio=0.7, modules="both", init="ri"))
    router.add_task("a", model)
    masks0 = router.masks("a")
    opt = torch.optim.Adam(router.scores("a").values(), lr=1e-2)
    routed = set(router.routed_names("a"))
    for _ in range(3):
        opt.zero_grad()
        model.zero_grad(set_to_none=True)
        whisper_loss(router(model, "a", mel, tokens), targets).backward()
        for n, p in model.named_parameters():
            if n in routed:
                assert p.grad is None, n
        # Unrouted parameters are the model's own and get gradients (a head could
        # train); nothing here steps them.
        assert model.encoder.blocks[0].mlp[0].bias.grad is not None
        opt.step()
    model.zero_grad(set_to_none=True)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = sum(int((router.masks("a")[n] != masks0[n]).sum()) for n in masks0)
    assert changed > 0  # the scores did move the masks


# --------------------------------------------------------------------- initialisation
def test_ri_is_kaiming_uniform_drawn_with_the_generator():
    w = torch.randn(6, 5)
    got = init_scores(w, "ri", torch.Generator().manual_seed(3))
    ref = torch.empty(6, 5)
    nn.init.kaiming_uniform_(
        ref, a=math.sqrt(5), generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(got, ref) and got.dtype == torch.float32
    assert float(got.abs().max()) <= 1 / math.sqrt(5)


def test_wmi_and_wmi_scaled_values():
    w = torch.tensor([[0.5, -2.0], [1.0, -0.25]], dtype=torch.float16)
    assert init_scores(w, "wmi").tolist() == [[0.5, 2.0], [1.0, 0.25]]
    scaled = init_scores(w, "wmi_scaled", init_scale=0.5)
    assert scaled.dtype == torch.float32
    assert scaled.tolist() == [[1.0, 4.0], [2.0, 0.5]]


def test_ori_follows_magnitude_ranking_with_the_ri_multiset(model):
    def router(init):
        r = ScoreRouter(S3RouterHparams(modules="both", init=init, seed=7))
        r.add_task("a", model)
        return r.scores("a")

    ori, ri = router("ori"), router("ri")
    params = dict(model.named_parameters())
    for n, s in ori.items():
        mag = params[n].detach().abs().flatten()
        assert mag.unique().numel() == mag.numel()  # distinct: ranks are unambiguous
        # Spearman(|S|, |θ|) = 1: identical rankings.
        assert torch.equal(
            torch.argsort(s.detach().abs().flatten()), torch.argsort(mag)
        )
        # Same multiset of (signed) scores as the RI draw with the same seed.
        assert torch.equal(
            s.detach().flatten().sort()[0], ri[n].detach().flatten().sort()[0]
        )
        assert not torch.equal(s, ri[n])


def test_seeds_are_per_tensor_and_deterministic(model):
    a = ScoreRouter(S3RouterHparams(modules="ffn", init="ri", seed=1))
    b = ScoreRouter(S3RouterHparams(modules="both", init="ri", seed=1))
    c = ScoreRouter(S3RouterHparams(modules="ffn", init="ri", seed=2))
    for r in (a, b, c):
        r.add_task("t", model)
    sa, sb, sc = a.scores("t"), b.scores("t"), c.scores("t")
    assert all(torch.equal(sa[n], sb[n]) for n in FFN)  # routing more changes nothing
    assert not any(torch.equal(sa[n], sc[n]) for n in FFN)
    # The router draws each tensor with score_generator(seed, name).
    assert torch.equal(
        init_scores(torch.empty(64, 16), "ri", score_generator(1, FFN[0])),
        sa[FFN[0]].detach(),
    )


# --------------------------------------------------------------------- outputs
def test_keep_one_reproduces_the_dense_model(model, batch):
    # P9: keep = 1 is the identity mask.
    mel, tokens, _ = batch
    router = ScoreRouter(S3RouterHparams(keep_ratio=1.0, modules="both", init="ri"))
    router.add_task("a", model)
    assert all(bool(m.all()) for m in router.masks("a").values())
    with torch.no_grad():
        assert torch.equal(router(model, "a", mel, tokens), model(mel, tokens))


def test_training_one_task_leaves_the_other_bit_identical(model, batch):
    # P13: continual learning trains only S_a; task b cannot change.
    mel, tokens, _ = batch
    router = ScoreRouter(S3RouterHparams(keep_ratio=0.7, modules="both", init="ori"))
    router.add_task("a", model)
    router.add_task("b", model)
    with torch.no_grad():
        out_a, out_b = router(model, "a", mel, tokens), router(model, "b", mel, tokens)
    scores_b = {n: s.detach().clone() for n, s in router.scores("b").items()}
    adam_steps(router, "a", model, batch)
    with torch.no_grad():
        assert torch.equal(router(model, "b", mel, tokens), out_b)
        assert not torch.equal(router(model, "a", mel, tokens), out_a)
    assert all(torch.equal(s, scores_b[n]) for n, s in router.scores("b").items())


# --------------------------------------------------------------------- S3-Router-P
@pytest.mark.parametrize("keep", [0.9, 0.7])
@pytest.mark.parametrize("scope", ["per_tensor", "global"])
@pytest.mark.parametrize("init,scale", [("wmi", 1.0), ("wmi_scaled", 0.5)])
def test_wmi_without_updates_is_magnitude_pruning(
    model, batch, keep, scope, init, scale
):
    router = ScoreRouter(
        S3RouterHparams(
            keep_ratio=keep, modules="both", init=init, scope=scope, init_scale=scale
        )
    )
    router.add_task("a", model)
    adam_steps(router, "a", model, batch, steps=1, lr=0.0)  # lr = 0: scores unchanged
    masks = router.masks("a")
    weights = {n: p.detach() for n, p in model.named_parameters() if n in masks}
    ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    if scope == "per_tensor":
        omp = prune_layerwise_magnitude(weights, ones, 1 - keep)
        # No half-integer counts here, so both roundings agree.
        assert all((keep * w.numel()) % 1 != 0.5 for w in weights.values())
    else:
        omp = prune_global_magnitude(weights, ones, 1 - keep)
    assert list(masks) == sorted(omp)
    assert all(torch.equal(masks[n], omp[n]) for n in masks)


# --------------------------------------------------------------------- routed names
def test_routed_names_of_openai_whisper(model):
    assert routed_parameter_names(model) == sorted(FFN)
    assert routed_parameter_names(model, "attn") == sorted(ATTN)
    assert routed_parameter_names(model, "both") == sorted(FFN + ATTN)
    # Only prunable weights: excluding a tensor from the scope removes it.
    scope = PruningScope(exclude=("positional_embedding", "encoder.blocks.0.mlp"))
    assert routed_parameter_names(model, "ffn", scope) == sorted(FFN[:4] + FFN[6:])


def test_routed_names_under_a_prefix_and_by_module_type(model):
    class Wrapper(nn.Module):  # like ESPnet's encoder wrapper: the same blocks, nested
        def __init__(self):
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.encoders = model.encoder
            self.query = nn.Linear(2, 2)  # attention-like name, not an attention module
            self.ffn = nn.Sequential(nn.Linear(2, 2))  # a Sequential not held as mlp

    names = routed_parameter_names(Wrapper(), "both")
    assert names == sorted(
        "encoder.encoders." + n.partition(".")[2]
        for n in FFN + ATTN
        if n.startswith("encoder")
    )
    with pytest.raises(ValueError, match="no attn weight"):
        routed_parameter_names(nn.Sequential(nn.Linear(2, 2)), "attn")
    with pytest.raises(ValueError, match="modules must be one of"):
        routed_parameter_names(model, "mlp")


@pytest.mark.parametrize(
    "field,value",
    [
        ("keep_ratio", 0.0),
        ("keep_ratio", 1.5),
        ("keep_ratio", True),
        ("keep_ratio", "0.9"),
        ("modules", "mlp"),
        ("init", "kaiming"),
        ("scope", "layer"),
        ("seed", 1.5),
        ("seed", True),
        ("init_scale", 0.0),
        ("init_scale", math.inf),
    ],
)
def test_hparams_validation(field, value):
    with pytest.raises(ValueError, match=field):
        S3RouterHparams(**{field: value})


def test_hparams_command_line():
    parser = argparse.ArgumentParser()
    S3RouterHparams.add_args(parser)
    args = parser.parse_args(
        ["--keep_ratio", "0.8", "--init", "wmi", "--scope", "global"]
    )
    assert S3RouterHparams.from_args(args) == S3RouterHparams(
        keep_ratio=0.8, init="wmi", scope="global"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--modules", "mlp"])


# --------------------------------------------------------------------- router state
def test_state_dict_holds_only_scores_and_reloads(model, batch):
    hp = S3RouterHparams(keep_ratio=0.7, modules="ffn", init="ri")
    router = ScoreRouter(hp)
    router.add_task("ic_slurp", model)
    router.add_task("v1.2", model)
    assert router.tasks == ("ic_slurp", "v1.2")
    keys = list(router.state_dict())
    assert keys[0] == "task_scores.ic_slurp.decoder/blocks/0/mlp/0/weight"
    assert len(keys) == 16 and "task_scores.v1/2.encoder/blocks/1/mlp/2/weight" in keys
    assert router.routed_names("v1.2") == sorted(FFN)
    model_keys = set(model.state_dict())
    adam_steps(router, "ic_slurp", model, batch, steps=2)
    assert set(model.state_dict()) == model_keys

    fresh = ScoreRouter(hp)
    fresh.add_task("ic_slurp", model)
    fresh.add_task("v1.2", model)
    fresh.load_state_dict(router.state_dict())
    for task in router.tasks:
        assert all(
            torch.equal(fresh.masks(task)[n], m) for n, m in router.masks(task).items()
        )
    router.remove_task("v1.2")
    assert router.tasks == ("ic_slurp",) and len(router.state_dict()) == 8


def test_masks_export_to_a_mask_set(model):
    router = ScoreRouter(S3RouterHparams(keep_ratio=0.5, modules="ffn", init="wmi"))
    router.add_task("asr", model)
    scope = router.pruning_scope
    ms = MaskSet.from_model(model, scope, ["asr"])
    ms.set_mask("asr", router.masks("asr", model))
    routed = router.masks("asr")
    for n, m in ms.mask("asr").items():
        assert torch.equal(m, routed[n]) if n in routed else bool(m.all()), n
    assert ms.kept("asr") == ms.numel() - 8 * 512


def test_router_errors(model):
    router = ScoreRouter()
    router.add_task("a", model)
    with pytest.raises(ValueError, match="exists already"):
        router.add_task("a", model)
    with pytest.raises(MaskError, match="invalid task name"):
        router.add_task("a b", model)
    with pytest.raises(ValueError, match="clashes"):
        router.add_task("train", model)
    with pytest.raises(KeyError, match="no scores for task 'b'"):
        router.masks("b")
    other = tiny_whisper(n_audio_state=32, n_text_state=32)
    with pytest.raises(ValueError, match="has shape"):
        router.effective_parameters(other, "a")
