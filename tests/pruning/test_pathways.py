"""Dynamic ASR Pathways (docs/methods.md §3): Eq. 1, adaptation, blocks, schedule, state.

Check numbers are those of the method notes' tiny-model checks (§3).
"""

import argparse
import io
import itertools

import pytest
import torch
from pruning_testlib import tiny_whisper

from espnet_pruning.pruning import report
from espnet_pruning.pruning.masks import MaskError
from espnet_pruning.pruning.pathways import (
    SCOPES,
    DynamicPathways,
    DynamicPathwaysHparams,
    StepChanges,
    adapt,
    block_norms,
    blocks_to_mask,
    mask_to_blocks,
    prune_masks,
    residual,
    scheduled_kept,
    training_mask,
    union_ratio,
)
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names


def _bits(*values):
    return torch.tensor(values, dtype=torch.bool)


def _whisper_weights():
    model = tiny_whisper()
    params = dict(model.named_parameters())
    names = prunable_parameter_names(model, PruningScope())
    return {n: params[n].detach().clone() for n in names}


def _random_masks(weights, tasks, densities, block=(1, 1), seed=0):
    """Block-uniform random masks (element masks for 1x1 blocks)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for task, density in zip(tasks, densities):
        out[task] = {}
        for n, w in weights.items():
            grid = block_norms(w, block).shape
            kept = torch.rand(grid, generator=g) < density
            out[task][n] = blocks_to_mask(kept, tuple(w.shape), block)
    return out


def _kept(mask):
    return {n: int(m.sum()) for n, m in mask.items()}


def _unit_counts(mask, block):
    return {n: int(mask_to_blocks(m, block).sum()) for n, m in mask.items()}


# --------------------------------------------------------------------- Eq. 1
def test_training_mask_matches_eq1_on_three_task_truth_table():
    # Position i holds the bits (m_a, m_b, m_c) = binary digits of i (m_a first).
    rows = list(itertools.product((0, 1), repeat=3))
    masks = {
        t: {"w": torch.tensor([r[j] for r in rows], dtype=torch.bool)}
        for j, t in enumerate("abc")
    }
    # m_{a,r} = a | ~(b | c), written out by hand for i = 0..7.
    by_hand = {
        "a": [1, 0, 0, 0, 1, 1, 1, 1],
        "b": [1, 0, 1, 1, 0, 0, 1, 1],
        "c": [1, 1, 0, 1, 0, 1, 0, 1],
    }
    formula = {
        "a": [a | (1 - (b | c)) for a, b, c in rows],
        "b": [b | (1 - (a | c)) for a, b, c in rows],
        "c": [c | (1 - (a | b)) for a, b, c in rows],
    }
    assert formula == by_hand
    dp = DynamicPathways(masks, DynamicPathwaysHparams())
    for t in "abc":
        assert training_mask(masks, t)["w"].int().tolist() == by_hand[t]
        assert dp.training_mask(t)["w"].int().tolist() == by_hand[t]
    assert residual(masks)["w"].int().tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert union_ratio(masks) == 7 / 8
    # residual=False (ASR Pathways): a batch trains its own mask only.
    own = DynamicPathways(masks, DynamicPathwaysHparams(residual=False))
    for t in "abc":
        assert torch.equal(own.training_mask(t)["w"], masks[t]["w"])
    # One task: nobody else owns anything.
    assert training_mask({"a": masks["a"]}, "a")["w"].all()


def test_masks_are_checked():
    good = {"a": {"w": _bits(1, 0)}, "b": {"w": _bits(0, 1)}}
    with pytest.raises(MaskError, match="'c'"):
        training_mask(good, "c")
    with pytest.raises(MaskError, match="task 'b'"):
        training_mask({"a": {"w": _bits(1, 0)}, "b": {"v": _bits(1, 0)}}, "a")
    with pytest.raises(MaskError, match="values other than 0 and 1"):
        training_mask({"a": {"w": torch.tensor([2, 0])}}, "a")
    with pytest.raises(MaskError, match="shape"):
        adapt({"w": torch.ones(3)}, good, "a", DynamicPathwaysHparams())
    with pytest.raises(MaskError, match="no weight"):
        adapt({"v": torch.ones(2)}, good, "a", DynamicPathwaysHparams())


# --------------------------------------------------------------------- adaptation
@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("granularity", ["element", "block"])
def test_adapt_keeps_count_and_stays_inside_training_mask(scope, granularity):
    hp = DynamicPathwaysHparams(scope=scope, granularity=granularity)
    block = hp.unit_shape
    weights = _whisper_weights()
    original = {n: w.clone() for n, w in weights.items()}
    masks = _random_masks(weights, "abc", (0.3, 0.5, 0.6), block)
    for task in "abc":
        cand = training_mask(masks, task)
        new = adapt(weights, masks, task, hp)
        before, after = _unit_counts(masks[task], block), _unit_counts(new, block)
        if scope == "layerwise":
            assert after == before
        else:
            assert sum(after.values()) == sum(before.values())
            assert after != before  # one threshold moves counts between tensors
        assert not any((new[n] & ~cand[n]).any() for n in new)  # m_z ⊆ m_{z,r}
        assert any(not torch.equal(new[n], masks[task][n]) for n in new)
        # Top-k: no dropped candidate unit scores above a kept one.
        groups = [[n] for n in new] if scope == "layerwise" else [list(new)]
        for group in groups:
            kept, dropped = [], []
            for n in group:
                s = block_norms(weights[n], block)
                k = mask_to_blocks(new[n], block)
                c = mask_to_blocks(cand[n], block)
                kept.append(s[k])
                dropped.append(s[c & ~k])
            kept, dropped = torch.cat(kept), torch.cat(dropped)
            if len(kept) and len(dropped):
                assert dropped.max() <= kept.min()
    # Only the adapted task's mask changes.
    dp = DynamicPathways(masks, DynamicPathwaysHparams(scope=scope, adapt_interval=1))
    changes = dp.after_step(1, "b", weights)
    assert changes.adapted == "b" and not changes.pruned
    assert list(changes.flipped) == ["b"] and changes.flipped["b"] > 0
    for t in "ac":
        assert all(torch.equal(dp.mask(t)[n], masks[t][n]) for n in weights)
    assert all(torch.equal(weights[n], original[n]) for n in weights)  # read only


def test_grown_residual_weight_displaces_smallest_kept():
    w = {"w": torch.tensor([0.5, -3.0, 2.0, -0.1, 4.0, 1.0, 0.2, -0.3])}
    masks = {
        "a": {"w": _bits(0, 1, 1, 0, 1, 0, 0, 0)},  # top 3 of m_{a,r}
        "b": {"w": _bits(1, 0, 0, 0, 0, 1, 0, 0)},  # residual: 3, 6, 7
    }
    dp = DynamicPathways(masks, DynamicPathwaysHparams(adapt_interval=2))
    assert not dp.after_step(1, "a", w)
    changes = dp.after_step(2, "a", w)  # a fixed point: nothing moves
    assert changes.adapted == "a" and changes.flipped == {"a": 0} and not changes
    w["w"][6] = 5.0  # a residual weight grows ...
    w["w"][0] = 100.0  # ... and so does one owned by b only: it must not enter
    assert not dp.after_step(3, "a", w)  # not an adaptation step
    changes = dp.after_step(4, "a", w)
    assert dp.mask("a")["w"].int().tolist() == [0, 1, 0, 0, 1, 0, 1, 0]  # 2.0 out
    assert changes.flipped == {"a": 2} and changes.density == {"a": 3 / 8, "b": 2 / 8}
    assert torch.equal(dp.mask("b")["w"], masks["b"]["w"])
    assert changes.union_ratio == 5 / 8


def test_grown_residual_weight_displaces_smallest_block():
    # A 16x3 weight: a 2x3 grid of 8x1 blocks, each block constant g (norm g * √8).
    g = torch.tensor([[1.0, 5.0, 2.0], [4.0, 0.5, 0.3]])
    w = {"w": g.repeat_interleave(8, 0).clone()}
    grid = {"a": [[0, 1, 1], [1, 0, 0]], "b": [[1, 0, 0], [0, 0, 0]]}
    masks = {
        t: {"w": blocks_to_mask(torch.tensor(b, dtype=torch.bool), (16, 3), (8, 1))}
        for t, b in grid.items()
    }
    hp = DynamicPathwaysHparams(adapt_interval=1, granularity="block")
    dp = DynamicPathways(masks, hp)
    assert dp.after_step(1, "a", w).flipped == {"a": 0}
    w["w"][8, 2] = 10.0  # one weight of the residual block (1, 2) grows
    w["w"][0, 0] = 50.0  # block (0, 0) belongs to b only
    assert dp.after_step(2, "a", w).flipped == {"a": 16}  # two blocks swap
    expected = torch.tensor([[0, 1, 0], [1, 0, 1]], dtype=torch.bool)  # 2.0 out
    assert torch.equal(dp.mask("a")["w"], blocks_to_mask(expected, (16, 3), (8, 1)))
    assert torch.equal(mask_to_blocks(dp.mask("a")["w"], (8, 1)), expected)


# --------------------------------------------------------------------- blocks
def _oracle_block_prune(weights, counts, scope, block=(8, 1)):
    """Brute force: blocks by (integer sum of squares, name order, grid index)."""
    br, bc = block
    entries = []  # (sumsq, name index, grid index, name, flat element indices)
    for i, name in enumerate(sorted(weights)):
        w = weights[name]
        w2 = w.reshape(-1, 1) if w.dim() == 1 else w.reshape(w.shape[0], -1)
        rows, cols = w2.shape
        gc = -(-cols // bc)
        for r0 in range(0, rows, br):
            for c0 in range(0, cols, bc):
                cells = [
                    (r, c)
                    for r in range(r0, min(r0 + br, rows))
                    for c in range(c0, min(c0 + bc, cols))
                ]
                sumsq = sum(int(w2[r, c]) ** 2 for r, c in cells)
                flat = [r * cols + c for r, c in cells]
                entries.append((sumsq, i, (r0 // br) * gc + c0 // bc, name, flat))
    out = {n: torch.ones(w.numel(), dtype=torch.bool) for n, w in weights.items()}
    groups = (
        [[e for e in entries if e[3] == n] for n in sorted(weights)]
        if scope == "layerwise"
        else [entries]
    )
    for group in groups:
        keep = counts[group[0][3]] if scope == "layerwise" else counts["all"]
        for e in sorted(group)[: len(group) - keep]:
            out[e[3]][e[4]] = False
    return {n: out[n].reshape(weights[n].shape) for n in weights}


@pytest.mark.parametrize(
    "scope, counts",
    [
        # Blocks: a 20x3 -> 3x3 = 9 (trailing blocks of 4 rows), b 10 -> 2 (8 + 2),
        # c 16x2 -> 4, d 8x2x3 (conv-like, seen as 8x6) -> 6. Prune round(0.4 size).
        ("layerwise", {"a": 5, "b": 1, "c": 2, "d": 4}),
        ("global", {"all": 13}),  # 21 blocks in all, round(8.4) = 8 pruned
    ],
)
def test_block_prune_removes_smallest_l2_blocks(scope, counts):
    g = torch.Generator().manual_seed(3)
    shapes = {"a": (20, 3), "b": (10,), "c": (16, 2), "d": (8, 2, 3)}
    weights = {
        n: torch.randint(-4, 5, s, generator=g).float() for n, s in shapes.items()
    }
    hp = DynamicPathwaysHparams(
        granularity="block", scope=scope, prune_fraction=0.4, target_sparsity=0.5
    )
    dense = {"x": {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}}
    new = prune_masks(weights, dense, hp)["x"]
    oracle = _oracle_block_prune(weights, counts, scope)
    for n in shapes:
        assert torch.equal(new[n], oracle[n]), n
        mask_to_blocks(new[n], (8, 1))  # every block all-0 or all-1 (else raises)
    blocks = _unit_counts(new, (8, 1))
    if scope == "layerwise":
        assert blocks == counts
    else:
        assert sum(blocks.values()) == counts["all"]
    # Partial blocks are scored by the weights they have.
    norms = block_norms(torch.tensor([3.0] * 8 + [3.0, 4.0]), (8, 1))
    assert norms.tolist() == [[torch.tensor(72.0).sqrt().item()], [5.0]]


def test_block_mode_rejects_mixed_blocks():
    mixed = {"a": {"w": torch.tensor([1] * 7 + [0] * 9, dtype=torch.bool)}}
    hp = DynamicPathwaysHparams(granularity="block")
    with pytest.raises(ValueError, match="task 'a': mask 'w' has a 8x1 block"):
        DynamicPathways(mixed, hp)
    with pytest.raises(ValueError, match="8x1 block"):
        adapt({"w": torch.ones(16)}, mixed, "a", hp)
    DynamicPathways(mixed, DynamicPathwaysHparams())  # fine element-wise


# --------------------------------------------------------------------- pruning
SCHEDULES = {
    # (scope, fraction_of) -> per task, kept after each prune step, until the target.
    ("layerwise", "total"): {
        "a": {"x": [50, 40, 30, 20, 15], "y": [30, 24, 18, 12, 9]},
        "b": {"x": [30, 20, 15, 15, 15], "y": [30, 24, 18, 12, 9]},
    },
    ("layerwise", "remaining"): {
        "a": {"x": [50, 40, 32, 26, 21, 17, 15], "y": [30, 24, 19, 15, 12, 10, 9]},
        "b": {"x": [30, 24, 19, 15, 15, 15, 15], "y": [30, 24, 19, 15, 12, 10, 9]},
    },
    ("global", "total"): {"a": [80, 64, 48, 32, 24], "b": [60, 44, 28, 24, 24]},
    ("global", "remaining"): {
        "a": [80, 64, 51, 41, 33, 26, 24],
        "b": [60, 48, 38, 30, 24, 24, 24],
    },
}


@pytest.mark.parametrize("scope, fraction_of", list(SCHEDULES))
def test_prune_schedule_exact_counts_until_target(scope, fraction_of):
    expected = SCHEDULES[scope, fraction_of]
    hp = DynamicPathwaysHparams(
        target_sparsity=0.7,
        prune_fraction=0.2,
        prune_fraction_of=fraction_of,
        scope=scope,
        adapt_interval=0,
        prune_interval=2,
    )
    b_x = torch.zeros(50, dtype=torch.bool)
    b_x[::5] = b_x[1::5] = b_x[2::5] = True  # 30 of 50
    masks = {
        "a": {"x": torch.ones(10, 5, dtype=torch.bool), "y": torch.ones(30).bool()},
        "b": {"x": b_x.reshape(10, 5), "y": torch.ones(30, dtype=torch.bool)},
    }
    dp = DynamicPathways(masks, hp)
    n_prunes = len(expected["a"]["x"] if scope == "layerwise" else expected["a"]) - 1
    g = torch.Generator().manual_seed(0)
    for step in range(1, 2 * n_prunes + 7):
        weights = {
            "x": torch.randn(10, 5, generator=g),
            "y": torch.randn(30, generator=g),
        }
        before = dp.masks
        changes = dp.after_step(step, "ab"[step % 2], weights)
        q = min(step // 2, n_prunes)
        assert changes.pruned == (step % 2 == 0 and step // 2 <= n_prunes)
        for t in "ab":
            if scope == "layerwise":
                assert _kept(dp.mask(t)) == {n: s[q] for n, s in expected[t].items()}
            else:
                assert sum(_kept(dp.mask(t)).values()) == expected[t][q]
        if changes.pruned:
            for t in "ab":
                assert changes.density[t] == sum(_kept(dp.mask(t)).values()) / 80
            assert changes.union_ratio == union_ratio(dp.masks)
            assert changes.union_ratio == report.union_ratio(dp.mask_set())
        else:
            assert changes == StepChanges(step) and not changes
            assert all(
                torch.equal(before[t][n], dp.mask(t)[n]) for t in "ab" for n in "xy"
            )
    assert dp.at_target() and dp.n_prunes == n_prunes


def test_scheduled_kept_clips_at_target_and_always_progresses():
    hp = DynamicPathwaysHparams(target_sparsity=0.7, prune_fraction_of="remaining")
    assert [scheduled_kept(k, 10, hp) for k in (10, 8, 6, 5, 4, 3, 2)] == [
        8,  # round(2.0)
        6,  # round(1.6) = 2
        5,  # round(1.2) = 1
        4,  # round(1.0)
        3,  # round(0.8) = 1
        3,  # at the target: 10 - round(7.0)
        2,  # below it: left alone
    ]
    tiny = DynamicPathwaysHparams(target_sparsity=0.9, prune_fraction=0.1)
    assert scheduled_kept(3, 4, tiny) == 2  # round(0.4) = 0, but at least one
    with pytest.raises(ValueError, match="kept=5"):
        scheduled_kept(5, 4, hp)


def test_prune_goes_task_by_task_in_sorted_order():
    w = {"w": torch.tensor([10.0, 9.0, 8.0, 2.0, 7.0])}
    hp = DynamicPathwaysHparams(target_sparsity=0.8)  # 2 kept -> 1 (the target)

    def run(first, second, hp=hp):
        masks = {
            first: {"w": _bits(1, 1, 0, 0, 0)},
            second: {"w": _bits(0, 0, 1, 1, 0)},
        }
        new = prune_masks(w, masks, hp)
        return new[first]["w"].int().tolist(), new[second]["w"].int().tolist()

    # a first: m_{a,r} = {0, 1, 4} -> {0}; then b sees the new m_a, so the 9.0 that
    # a released is b's residual: m_{b,r} = {1, 2, 3, 4} -> {1}.
    assert run("a", "b") == ([1, 0, 0, 0, 0], [0, 1, 0, 0, 0])
    # b first (sorted): m_{b,r} = {2, 3, 4} -> {2}; m_{z,r} = {0, 1, 3, 4} -> {0}.
    assert run("z", "b") == ([1, 0, 0, 0, 0], [0, 0, 1, 0, 0])
    # ASR Pathways (residual=False): pruning nests in each own mask.
    nested = DynamicPathwaysHparams(target_sparsity=0.8, residual=False)
    assert run("a", "b", nested) == ([1, 0, 0, 0, 0], [0, 0, 1, 0, 0])


def test_prune_leaves_masks_at_target_alone():
    w = {"u": torch.arange(1.0, 11.0), "v": torch.arange(1.0, 11.0)}
    at_target = _bits(1, 1, 1, 0, 0, 0, 0, 0, 0, 0)  # 3 of 10: the 0.7 target
    b_u = _bits(0, 0, 0, 1, 1, 1, 1, 1, 0, 0)  # 5 of 10: next 3
    for scope in SCOPES:
        hp = DynamicPathwaysHparams(scope=scope)
        masks = {"a": {"u": at_target}, "b": {"u": b_u}}
        new = prune_masks({"u": w["u"]}, masks, hp)
        # Not re-chosen, although 9 and 10 are in m_{a,r} = {0, 1, 2, 8, 9}.
        assert torch.equal(new["a"]["u"], at_target)
        assert new["b"]["u"].int().tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    # Layerwise: a tensor at the target stays while the task's other tensors shrink.
    dense = torch.ones(10, dtype=torch.bool)
    masks = {"a": {"u": at_target, "v": dense}, "b": {"u": b_u, "v": dense}}
    new = prune_masks(w, masks, DynamicPathwaysHparams())
    assert torch.equal(new["a"]["u"], at_target)
    assert _kept(new["a"]) == {"u": 3, "v": 8}


def test_adaptation_runs_before_pruning_at_one_step():
    w = {"w": torch.tensor([9.0, 8.0, 1.0, 7.0, 3.0])}
    same = _bits(1, 0, 1, 1, 0)
    hp = DynamicPathwaysHparams(target_sparsity=0.8, adapt_interval=1, prune_interval=1)
    dp = DynamicPathways({"a": {"w": same}, "b": {"w": same}}, hp)
    changes = dp.after_step(1, "b", w)
    # Adapt b in m_{b,r} = all -> {0, 1, 3}; prune a in {0, 2, 3, 4} -> {0, 3};
    # prune b in all -> {0, 1}. (Prune first would give a {0, 1}, b {0, 3}.)
    assert dp.mask("a")["w"].int().tolist() == [1, 0, 0, 1, 0]
    assert dp.mask("b")["w"].int().tolist() == [1, 1, 0, 0, 0]
    assert (changes.adapted, changes.pruned) == ("b", True)
    assert changes.flipped == {"a": 1, "b": 3} and changes.union_ratio == 3 / 5


def test_layerwise_equal_sparsity_global_one_threshold():
    weights = _whisper_weights()
    dense = {
        t: {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        for t in "ab"
    }
    layer = prune_masks(weights, dense, DynamicPathwaysHparams())
    for t in "ab":
        for n, m in layer[t].items():
            size = m.numel()
            assert int(m.sum()) == size - round(0.2 * size), n  # exact per tensor
            assert abs((1 - int(m.sum()) / size) - 0.2) <= 0.5 / size
    blocks = prune_masks(weights, dense, DynamicPathwaysHparams(granularity="block"))
    for n, m in blocks["a"].items():
        grid = mask_to_blocks(m, (8, 1))
        assert int(grid.sum()) == grid.numel() - round(0.2 * grid.numel()), n
    glob = prune_masks(weights, dense, DynamicPathwaysHparams(scope="global"))
    total = sum(w.numel() for w in weights.values())
    for t in "ab":
        m = glob[t]
        assert sum(_kept(m).values()) == total - round(0.2 * total)
        kept = torch.cat([weights[n][m[n]].abs() for n in m])
        pruned = torch.cat([weights[n][~m[n]].abs() for n in m])
        assert pruned.max() <= kept.min()  # one threshold over all tensors
        sparsities = {round(1 - int(m[n].sum()) / m[n].numel(), 3) for n in m}
        assert len(sparsities) > 3


# --------------------------------------------------------------------- no adaptation
@pytest.mark.parametrize("with_residual", [True, False])
def test_at_target_without_adaptation_masks_never_change(with_residual):
    weights = _whisper_weights()
    hp = DynamicPathwaysHparams(
        target_sparsity=0.5, adapt_interval=0, prune_interval=1, residual=with_residual
    )
    dense = {
        t: {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        for t in "abc"
    }
    start = dense
    while True:  # reach the target
        nxt = prune_masks(weights, start, hp)
        if all(torch.equal(nxt[t][n], start[t][n]) for t in nxt for n in weights):
            break
        start = nxt
    dp = DynamicPathways(start, hp)
    assert dp.at_target()
    fixed = {t: dp.training_mask(t) for t in "abc"}
    g = torch.Generator().manual_seed(1)
    for step in range(1, 13):
        noisy = {n: w + torch.randn(w.shape, generator=g) for n, w in weights.items()}
        changes = dp.after_step(step, "abc"[step % 3], noisy)
        assert changes == StepChanges(step)
        for t in "abc":
            assert all(torch.equal(dp.mask(t)[n], start[t][n]) for n in weights)
            now = dp.training_mask(t)
            assert all(torch.equal(now[n], fixed[t][n]) for n in weights)
            if not with_residual:  # the forward mask is m_t: core Algorithm 2
                assert all(torch.equal(now[n], start[t][n]) for n in weights)
    # Control: the same run with adaptation does move masks (with residual).
    moving = DynamicPathways(
        start, DynamicPathwaysHparams(adapt_interval=1, residual=with_residual)
    )
    assert bool(moving.after_step(1, "a", noisy)) == with_residual


# --------------------------------------------------------------------- state
def _weights_at(step):
    g = torch.Generator().manual_seed(step)
    return {"p": torch.randn(16, 4, generator=g), "q": torch.randn(24, generator=g)}


@pytest.mark.parametrize("granularity", ["element", "block"])
def test_state_dict_round_trip_continues_identically(granularity):
    hp = DynamicPathwaysHparams(
        target_sparsity=0.75,
        adapt_interval=3,
        prune_interval=5,
        granularity=granularity,
        prune_fraction_of="remaining",
    )
    block = hp.unit_shape
    init = _random_masks(_weights_at(0), "ab", (0.9, 0.7), block, seed=2)
    a = DynamicPathways(init, hp)
    for step in range(1, 9):
        a.after_step(step, "ab"[step % 2], _weights_at(step))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    saved = torch.load(io.BytesIO(buffer.getvalue()))
    assert set(saved) == {"masks", "last_step", "n_adaptations", "n_prunes"}
    assert saved["last_step"] == 8 and saved["n_adaptations"] == 2
    assert all(
        type(m) is dict and all(v.dtype == torch.bool for v in m.values())
        for m in saved["masks"].values()
    )
    b = DynamicPathways(init, hp)
    b.load_state_dict(saved)
    for step in range(9, 31):
        weights = _weights_at(step)
        ca = a.after_step(step, "ab"[step % 2], weights)
        cb = b.after_step(step, "ab"[step % 2], weights)
        assert ca == cb
        assert all(torch.equal(a.mask(t)[n], b.mask(t)[n]) for t in "ab" for n in "pq")
    assert a.n_prunes == b.n_prunes > 0 and a.n_adaptations == b.n_adaptations
    with pytest.raises(ValueError, match="step 30 does not follow"):
        b.after_step(30, "a", _weights_at(30))
    with pytest.raises(MaskError, match="'c'"):
        b.after_step(31, "c", _weights_at(31))
    other = {
        "masks": {"a": saved["masks"]["a"]},
        **{k: 0 for k in ("last_step", "n_adaptations", "n_prunes")},
    }
    with pytest.raises(MaskError, match="tasks"):
        b.load_state_dict(other)
    assert b.last_step == 30  # unchanged


def test_mask_set_export():
    masks = {
        "a": {"w": _bits(1, 0, 1), "v": _bits(0, 1)},
        "b": {"w": _bits(0, 0, 1), "v": _bits(1, 1)},
    }
    ms = DynamicPathways(masks, DynamicPathwaysHparams()).mask_set(n_model_params=9)
    assert ms.tasks == ("a", "b") and ms.names == ("v", "w")
    assert ms.kept("a") == 3 and ms.kept("b") == 3 and ms.n_model_params == 9
    assert report.union_ratio(ms) == union_ratio(masks) == 4 / 5


# --------------------------------------------------------------------- hparams
@pytest.mark.parametrize(
    "name, value",
    [
        ("target_sparsity", 1.5),
        ("target_sparsity", -0.1),
        ("target_sparsity", "0.7"),
        ("target_sparsity", True),
        ("adapt_interval", -1),
        ("adapt_interval", 1.5),
        ("adapt_interval", True),
        ("prune_interval", -1),
        ("prune_interval", "10"),
        ("prune_fraction", 0.0),
        ("prune_fraction", 1.5),
        ("prune_fraction", True),
        ("prune_fraction_of", "all"),
        ("granularity", "row"),
        ("block_shape", "8"),
        ("block_shape", "0x1"),
        ("block_shape", "8x1x1"),
        ("block_shape", (8, 1)),
        ("scope", "local"),
        ("residual", "yes"),
        ("residual", 1),
    ],
)
def test_hparams_validation(name, value):
    with pytest.raises(ValueError, match=name):
        DynamicPathwaysHparams(**{name: value})


def test_hparams_defaults_and_command_line():
    hp = DynamicPathwaysHparams()
    assert (hp.target_sparsity, hp.adapt_interval, hp.prune_interval) == (0.7, 100, 0)
    assert (hp.prune_fraction, hp.prune_fraction_of, hp.scope) == (
        0.2,
        "total",
        "layerwise",
    )
    assert hp.granularity == "element" and hp.unit_shape == (1, 1) and hp.residual
    parser = argparse.ArgumentParser()
    DynamicPathwaysHparams.add_args(parser)
    args = parser.parse_args(
        ["--granularity", "block", "--block_shape", "4x2", "--prune_interval", "80"]
    )
    hp = DynamicPathwaysHparams.from_args(args)
    assert hp.unit_shape == (4, 2) and hp.prune_interval == 80
    assert hp.residual  # on by default, off with its --no- form (ASR Pathways)
    assert not DynamicPathwaysHparams.from_args(
        parser.parse_args(["--no-residual"])
    ).residual
    with pytest.raises(SystemExit):
        parser.parse_args(["--scope", "local"])
