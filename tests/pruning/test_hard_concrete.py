"""Hard-Concrete gates, Lagrangian and ramp (espnet_pruning.pruning.hard_concrete).

The tiny-model checks (1)–(4) of HJ-Pruning's spec (docs/methods.md §2): sample range
and rate of non-zero gates, the gradient through log α, λ ascent and convergence of the
expected sparsity to the target, the target ramp; plus the deterministic evaluation gates,
the clamp and the hyperparameter validation.
"""

import argparse
import math

import pytest
import torch
from pruning_testlib import tiny_whisper

from espnet_pruning.pruning.hard_concrete import (
    BETA,
    LIMIT_L,
    LIMIT_R,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    HardConcrete,
    HardConcreteHparams,
    Lagrangian,
    ascent_optimizer,
    target_sparsity,
)
from espnet_pruning.pruning.structured import GateSet

SHIFT = -BETA * math.log(-LIMIT_L / LIMIT_R)


def gate_with(log_alpha) -> HardConcrete:
    log_alpha = torch.as_tensor(log_alpha, dtype=torch.float32)
    gate = HardConcrete(log_alpha.numel())
    with torch.no_grad():
        gate.log_alpha.copy_(log_alpha)
    return gate


# --------------------------------------------------------------------- (1) samples
def test_samples_lie_in_unit_interval_and_nonzero_rate_matches_eq3():
    torch.manual_seed(0)
    n = 100_000
    levels = [-2.0, -0.5, 0.0, 1.0, 3.0]
    gate = gate_with(torch.tensor(levels).repeat_interleave(n))
    z = gate.sample().view(len(levels), n)
    assert z.min().item() == 0.0 and z.max().item() == 1.0
    assert ((z >= 0) & (z <= 1)).all()
    for row, level in zip(z, levels):
        assert (row == 0).any() and (row == 1).any()
        expected = 1.0 / (1.0 + math.exp(-(level + SHIFT)))
        assert abs((row > 0).double().mean().item() - expected) <= 0.01
    expected_l0 = sum(n / (1.0 + math.exp(-(lv + SHIFT))) for lv in levels)
    assert gate.l0_norm().item() == pytest.approx(expected_l0, rel=1e-5)


def test_forward_samples_in_training_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    gate = gate_with(torch.zeros(1000))
    assert not torch.equal(gate(), gate())
    gate.eval()
    assert torch.equal(gate(), gate())


def test_init_draws_around_log_odds_of_the_drop_rate():
    gen = torch.Generator().manual_seed(0)
    gate = HardConcrete(20_000, init_drop=0.01, generator=gen)
    assert gate.log_alpha.mean().item() == pytest.approx(math.log(99), abs=1e-3)
    assert gate.log_alpha.std().item() == pytest.approx(0.01, rel=0.05)
    again = HardConcrete(20_000, init_drop=0.01, generator=gen.manual_seed(0))
    assert torch.equal(gate.log_alpha, again.log_alpha)


# --------------------------------------------------------------------- (2) gradient
def test_gradient_reaches_log_alpha_only_through_unclamped_samples():
    torch.manual_seed(0)
    gate = gate_with(torch.randn(2000))
    z = gate.sample()
    w = torch.rand(2000) + 0.5
    (z * w).sum().backward()
    grad = gate.log_alpha.grad
    inside = (z > 0) & (z < 1)
    assert inside.any() and (~inside).any() and (z == 0).any() and (z == 1).any()
    assert (grad[inside] != 0).all()
    assert (grad[~inside] == 0).all()
    # dz/dlog α = (r - l) v (1 - v) / β, v recovered from z.
    v = (z.detach() - LIMIT_L) / (LIMIT_R - LIMIT_L)
    expected = w * (LIMIT_R - LIMIT_L) * v * (1 - v) / BETA
    torch.testing.assert_close(grad[inside], expected[inside], rtol=1e-3, atol=1e-6)


def test_clamp_limits_log_alpha_to_cofi_range():
    gate = gate_with([-9.0, -1.0, 0.0, 7.0])
    gate.clamp_()
    assert gate.log_alpha.tolist() == pytest.approx(
        [LOG_ALPHA_MIN, -1.0, 0.0, LOG_ALPHA_MAX]
    )
    assert LOG_ALPHA_MIN == math.log(0.01) and LOG_ALPHA_MAX == math.log(100)


# --------------------------------------------------------------------- eval gates
def test_eval_gate_drops_the_rounded_expected_zeros_and_keeps_soft_values():
    gate = gate_with([3.0, -3.0, 0.5, -0.2, -4.0]).eval()
    l0 = sum(1 / (1 + math.exp(-(a + SHIFT))) for a in [3.0, -3.0, 0.5, -0.2, -4.0])
    assert gate.num_dropped() == round(5 - l0) == 2
    soft = [1 / (1 + math.exp(-0.8 * a / BETA)) for a in [3.0, -3.0, 0.5, -0.2, -4.0]]
    assert gate().tolist() == pytest.approx([soft[0], 0.0, soft[2], soft[3], 0.0])


def test_eval_gate_ties_drop_earlier_indices_first():
    gate = gate_with(torch.full((4,), -SHIFT)).eval()  # P(z != 0) = 1/2 each
    assert gate.num_dropped() == 2
    z = gate()
    assert z[:2].tolist() == [0.0, 0.0] and (z[2:] > 0).all()


def test_eval_gate_with_huge_log_alpha_is_exactly_one():
    gate = gate_with(torch.full((3,), 100.0)).eval()
    assert gate().tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------- (3) Lagrangian
@pytest.mark.parametrize("flip", [False, True])
def test_one_ascent_step_moves_lambda1_by_lr_times_gap(flip):
    gates = GateSet(tiny_whisper(), HardConcreteHparams())
    s = gates.expected_sparsity()
    t, lr = 0.6, 0.1
    assert s.item() < t
    lagrangian = Lagrangian(flip_grad=flip)
    if flip:  # a plain descent optimizer ascends through the flipped gradient
        optimizer = torch.optim.SGD(lagrangian.parameters(), lr=lr)
    else:
        optimizer = ascent_optimizer(lagrangian.parameters(), lr=lr)
    lagrangian(s, t).backward()
    optimizer.step()
    gap = s.item() - t
    assert lagrangian.lambda_1.item() == pytest.approx(lr * gap, rel=1e-6)
    assert lagrangian.lambda_1.item() < 0
    assert lagrangian.lambda_2.item() == pytest.approx(lr * gap * gap, rel=1e-5)


def test_penalty_value():
    lagrangian = Lagrangian()
    with torch.no_grad():
        lagrangian.lambda_1.fill_(2.0)
        lagrangian.lambda_2.fill_(3.0)
    assert lagrangian(torch.tensor(0.5), 0.25).item() == 2.0 * 0.25 + 3.0 * 0.0625


def _train_penalty_only(variant: str, target: float, ascend: bool) -> float:
    gates = GateSet(tiny_whisper(), HardConcreteHparams(variant=variant))
    lagrangian = Lagrangian()
    gate_opt = torch.optim.Adam(gates.parameters(), lr=0.05)
    lambda_opt = torch.optim.SGD(lagrangian.parameters(), lr=0.5, maximize=ascend)
    for _ in range(1000):  # zero task loss: the penalty alone
        loss = lagrangian(gates.expected_sparsity(), target)
        gate_opt.zero_grad()
        lambda_opt.zero_grad()
        loss.backward()
        gate_opt.step()
        lambda_opt.step()
        gates.clamp_()
    return gates.expected_sparsity().item()


@pytest.mark.parametrize("variant,target", [("size", 0.4), ("mac", 0.6)])
def test_expected_sparsity_converges_to_target_by_ascent_not_descent(variant, target):
    assert abs(_train_penalty_only(variant, target, ascend=True) - target) <= 0.01
    assert abs(_train_penalty_only(variant, target, ascend=False) - target) > 0.1


def test_ascent_optimizer_kinds():
    p = torch.nn.Parameter(torch.zeros(()))
    assert ascent_optimizer([p], 0.1).defaults["maximize"]
    assert ascent_optimizer([p], 0.1, "adamw").defaults["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="kind"):
        ascent_optimizer([p], 0.1, "adam")


# --------------------------------------------------------------------- (4) ramp
def test_target_ramps_linearly_then_holds():
    for step in range(0, 301, 7):
        assert target_sparsity(step, 100, 0.4) == 0.4 * min(1.0, step / 100)
    assert [target_sparsity(s, 100, 0.4) for s in (0, 50, 100, 250)] == [
        0.0,
        0.2,
        0.4,
        0.4,
    ]
    assert target_sparsity(0, 0, 0.4) == 0.4
    assert target_sparsity(50, 100, 0.5, start=0.1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        target_sparsity(-1, 10, 0.4)


# --------------------------------------------------------------------- hparams
def test_hparams_defaults_and_command_line():
    hp = HardConcreteHparams()
    assert (hp.target_sparsity, hp.head_init_drop, hp.ffn_init_drop) == (0.5, 0.01, 0.5)
    assert (hp.variant, hp.mac_input_seconds, hp.reg_lr) == ("size", 10.0, 0.02)
    parser = argparse.ArgumentParser()
    HardConcreteHparams.add_args(parser)
    args = parser.parse_args(["--variant", "mac", "--sparsity_warmup_steps", "500"])
    assert HardConcreteHparams.from_args(args) == HardConcreteHparams(
        variant="mac", sparsity_warmup_steps=500
    )


@pytest.mark.parametrize(
    "field,value",
    [
        ("target_sparsity", 1.0),
        ("target_sparsity", -0.1),
        ("target_sparsity", "0.5"),
        ("sparsity_warmup_steps", -1),
        ("sparsity_warmup_steps", 1.5),
        ("head_init_drop", 0.0),
        ("ffn_init_drop", 1.0),
        ("variant", "sepsize"),
        ("mac_input_seconds", 0.0),
        ("mac_input_seconds", float("inf")),
        ("mac_text_length", 0),
        ("reg_lr", -0.02),
        ("reg_lr", True),
    ],
)
def test_hparams_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        HardConcreteHparams(**{field: value})
