"""Hard-Concrete gates, the augmented Lagrangian and the target ramp of HJ-Pruning.

HJ-Pruning (Peng et al., ICASSP 2023; docs/methods.md §2) gives every prunable structure
``j`` (an attention head, an FFN intermediate unit) a gate ``z_j ∈ [0, 1]`` drawn from a
Hard-Concrete distribution with a learned location ``log α_j`` (Eq. 2):

    ``u ~ U(eps, 1 - eps)``, ``v = σ((log(u / (1 - u)) + log α) / β)``,
    ``z = min(1, max(0, (r - l) · v + l))``

and the probability that a gate is non-zero, ``σ(log α - β log(-l / r))`` (Eq. 3), makes the
expected number of kept structures differentiable (:meth:`HardConcrete.l0_norm`). An
augmented Lagrangian holds the expected sparsity ``s(α)`` at a target ``t`` (Eqs. 5–6):
the training loss gains ``λ₁ (s - t) + λ₂ (s - t)²``; ``θ`` and ``log α`` descend, ``λ₁`` and
``λ₂`` *ascend* (:class:`Lagrangian`). ``t`` ramps linearly (:func:`target_sparsity`).

Conventions (code defaults where the paper is silent, docs/methods.md §2):

* **Constants** (pyf98/DPHuBERT ``wav2vec2/hardconcrete.py``): ``β = 2/3``, ``l = -0.1``,
  ``r = 1.1``, ``eps = 1e-6``; ``log α ~ N(log(1 - d₀) - log d₀, 0.01²)`` (standard
  deviation 0.01) with the initial drop rate ``d₀`` = 0.01 for heads and 0.5 for FFN units.
* **Evaluation gates** (DPHuBERT/CoFi convention): in ``eval()`` the gate is
  deterministic. The expected number of dropped gates ``n - l0_norm()`` is rounded
  (Python's ``round``, half to even) to ``k``; the ``k`` gates with the smallest soft value
  ``σ(0.8 · log α / β)`` (the authors' "magic number" 0.8) are set to exactly 0, ties by
  index (stable sort, earlier index dropped first), and the others keep their **soft**
  value in ``(0, 1)``, not 1. A compiled model folds those soft values into the weights
  (:func:`espnet_pruning.pruning.structured.compile_pruned`). Unlike DPHuBERT, the mask is
  recomputed at every call (no cache that could go stale after a step).
* **Clamp.** :meth:`HardConcrete.clamp_` limits ``log α`` to ``[log 0.01, log 100]``
  (CoFiPruning ``l0_module.constrain_parameters``); call it after every optimizer step.
* **Ascent.** ``λ₁ = λ₂ = 0`` at the start. CoFi and DPHuBERT give the multipliers a
  *negative* learning rate, which current torch optimizers reject. Here either give the
  multipliers their own optimizer with ``maximize=True`` (:func:`ascent_optimizer`; SGD,
  Adam and AdamW take it), or build the :class:`Lagrangian` with ``flip_grad=True``: a
  tensor hook negates the multipliers' gradient, so the same descent optimizer that trains
  ``θ`` and ``log α`` ascends in ``λ`` (weight decay must then be 0 for them). One SGD
  ascent step with learning rate ``η`` moves ``λ₁`` by ``+η (s - t)``.
* **Ramp.** ``t(step) = t_start + (t_target - t_start) · min(1, step / warmup)``
  (CoFiPruning ``trainer.py``); ``warmup = 0`` gives the target from step 0. The paper
  ramps from ``t_start = 0``.

Examples:
    >>> gate = HardConcrete(4, init_drop=0.5, generator=torch.Generator().manual_seed(0))
    >>> with torch.no_grad():
    ...     _ = gate.log_alpha.copy_(torch.tensor([3.0, -3.0, 0.5, -0.2]))
    >>> round(gate.l0_norm().item(), 4)
    2.8804
    >>> _ = gate.eval()
    >>> [round(v, 4) for v in gate().tolist()]
    [0.9734, 0.0, 0.6457, 0.4403]
    >>> target_sparsity(50, warmup_steps=100, target=0.4)
    0.2
"""

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.hparams import Hparams

#: Temperature β, stretch limits l < 0 < 1 < r and the uniform's margin (DPHuBERT).
BETA = 2.0 / 3.0
LIMIT_L = -0.1
LIMIT_R = 1.1
EPS = 1e-6
#: CoFiPruning's clamp of log α after each step.
LOG_ALPHA_MIN = math.log(1e-2)
LOG_ALPHA_MAX = math.log(1e2)
#: DPHuBERT's factor of the soft evaluation gate σ(0.8 · log α / β).
EVAL_SOFT_FACTOR = 0.8
#: How the expected sparsity is measured (docs/methods.md §2).
VARIANTS = ("size", "mac")


# --------------------------------------------------------------------- hparams
@dataclass
class HardConcreteHparams(Hparams):
    """Hyperparameters of HJ-Pruning's gates and sparsity constraint (docs/methods.md §2).

    Args:
        target_sparsity: Final target ``t`` of the expected sparsity, in ``[0, 1)``.
        sparsity_warmup_steps: Steps over which ``t`` ramps linearly from 0 to the target
            (the paper: the first 5 epochs); ``0``: the target from the start.
        head_init_drop: Initial drop rate ``d₀`` of attention-head gates, in ``(0, 1)``
            (DPHuBERT: 0.01).
        ffn_init_drop: Initial drop rate ``d₀`` of FFN-unit gates, in ``(0, 1)``
            (DPHuBERT: 0.5).
        variant: ``size`` (sparsity of the gated structures' parameters) or ``mac``
            (sparsity of their multiply-accumulates).
        mac_input_seconds: Virtual input length of the MAC count (the paper: 10 s); the
            encoder length is 50 frames per second after Whisper's conv front-end.
        mac_text_length: Decoder length ``L`` (tokens, prompt included) of the MAC count.
            Not in the paper (it has no decoder); 32 is about a 10-second utterance's
            tokens plus the prompt.
        reg_lr: Learning rate of ``log α`` and of the multipliers (the paper: 0.02 or
            0.05), ``> 0``.
    """

    target_sparsity: float = field(
        default=0.5, metadata={"help": "final target of the expected sparsity"}
    )
    sparsity_warmup_steps: int = field(
        default=0, metadata={"help": "steps of the linear target ramp from 0"}
    )
    head_init_drop: float = field(
        default=0.01, metadata={"help": "initial drop rate d0 of head gates"}
    )
    ffn_init_drop: float = field(
        default=0.5, metadata={"help": "initial drop rate d0 of FFN-unit gates"}
    )
    variant: str = field(
        default="size",
        metadata={"help": "what the sparsity measures", "choices": VARIANTS},
    )
    mac_input_seconds: float = field(
        default=10.0, metadata={"help": "virtual input length of the MAC count (s)"}
    )
    mac_text_length: int = field(
        default=32, metadata={"help": "decoder tokens of the MAC count"}
    )
    reg_lr: float = field(
        default=0.02, metadata={"help": "learning rate of log alpha and the lambdas"}
    )

    def __post_init__(self):
        _check_number("target_sparsity", self.target_sparsity)
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(
                f"target_sparsity must be in [0, 1), got {self.target_sparsity}"
            )
        _check_int("sparsity_warmup_steps", self.sparsity_warmup_steps, minimum=0)
        for name in ("head_init_drop", "ffn_init_drop"):
            value = getattr(self, name)
            _check_number(name, value)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        for name in ("mac_input_seconds", "reg_lr"):
            value = getattr(self, name)
            _check_number(name, value)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        _check_int("mac_text_length", self.mac_text_length, minimum=1)


def _check_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


# --------------------------------------------------------------------- gates
class HardConcrete(nn.Module):
    """Hard-Concrete gates over ``n`` units (docs/methods.md §2, Eqs. 2–3).

    Calling the module returns the gate vector ``z`` of shape ``(n,)``: a fresh sample in
    ``train()`` mode (differentiable in ``log α`` where ``0 < z < 1``), the deterministic
    evaluation gate in ``eval()`` mode (see the module docstring).

    Args:
        n: Number of units.
        init_drop: Initial drop rate ``d₀ ∈ (0, 1)``: ``log α`` is drawn from
            ``N(log(1 - d₀) - log d₀, init_std²)``.
        init_std: Standard deviation of the initial ``log α``.
        beta: Temperature β.
        limit_l: Left stretch limit ``l < 0``.
        limit_r: Right stretch limit ``r > 1``.
        eps: Margin of the uniform draw, ``u ∈ [eps, 1 - eps]``.
        generator: Generator of the initial draw (the global RNG if None).
    """

    @typechecked
    def __init__(
        self,
        n: int,
        init_drop: float = 0.5,
        init_std: float = 0.01,
        beta: float = BETA,
        limit_l: float = LIMIT_L,
        limit_r: float = LIMIT_R,
        eps: float = EPS,
        generator: Optional[torch.Generator] = None,
    ):
        super().__init__()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not 0.0 < init_drop < 1.0:
            raise ValueError(f"init_drop must be in (0, 1), got {init_drop}")
        if not (limit_l < 0.0 and limit_r > 1.0 and beta > 0.0 and 0 < eps < 0.5):
            raise ValueError(
                f"need l < 0 < 1 < r, beta > 0 and 0 < eps < 0.5, got l={limit_l}, "
                f"r={limit_r}, beta={beta}, eps={eps}"
            )
        self.n = n
        self.beta = beta
        self.limit_l = limit_l
        self.limit_r = limit_r
        self.eps = eps
        #: ``-β log(-l / r)``: the shift of Eq. 3.
        self.l0_shift = -beta * math.log(-limit_l / limit_r)
        mean = math.log(1.0 - init_drop) - math.log(init_drop)
        init = torch.empty(n).normal_(mean, init_std, generator=generator)
        self.log_alpha = nn.Parameter(init)

    def extra_repr(self) -> str:
        return f"n={self.n}, beta={self.beta:.4g}, l={self.limit_l}, r={self.limit_r}"

    def prob_nonzero(self) -> torch.Tensor:
        """``P(z_j ≠ 0) = σ(log α_j - β log(-l / r))`` per unit (Eq. 3), shape ``(n,)``."""
        return torch.sigmoid(self.log_alpha + self.l0_shift)

    def l0_norm(self) -> torch.Tensor:
        """Expected number of non-zero gates, ``Σ_j σ(log α_j - β log(-l / r))`` (Eq. 3)."""
        return self.prob_nonzero().sum()

    def sample(self) -> torch.Tensor:
        """A fresh stochastic gate vector (Eq. 2), differentiable in ``log α``."""
        u = torch.empty_like(self.log_alpha).uniform_(self.eps, 1.0 - self.eps)
        v = torch.sigmoid((torch.log(u / (1.0 - u)) + self.log_alpha) / self.beta)
        return (v * (self.limit_r - self.limit_l) + self.limit_l).clamp(0.0, 1.0)

    def num_dropped(self) -> int:
        """``round(n - l0_norm())``: how many evaluation gates are exactly 0."""
        return min(self.n, max(0, round(self.n - self.l0_norm().item())))

    def deterministic(self) -> torch.Tensor:
        """The evaluation gates: soft ``σ(0.8 · log α / β)``, the smallest dropped to 0."""
        soft = torch.sigmoid(self.log_alpha * (EVAL_SOFT_FACTOR / self.beta))
        k = self.num_dropped()
        if k:
            order = torch.argsort(soft.detach(), stable=True)
            keep = torch.ones_like(soft)
            keep[order[:k]] = 0.0
            soft = soft * keep
        return soft

    def forward(self) -> torch.Tensor:
        """``sample()`` in training mode, ``deterministic()`` in evaluation mode."""
        return self.sample() if self.training else self.deterministic()

    @torch.no_grad()
    def clamp_(
        self, low: float = LOG_ALPHA_MIN, high: float = LOG_ALPHA_MAX
    ) -> "HardConcrete":
        """Clamp ``log α`` in place to ``[low, high]`` (CoFi: after every step)."""
        self.log_alpha.clamp_(low, high)
        return self


# --------------------------------------------------------------------- Lagrangian
class Lagrangian(nn.Module):
    """The augmented-Lagrangian penalty ``λ₁ (s - t) + λ₂ (s - t)²`` (Eqs. 5–6).

    ``λ₁`` and ``λ₂`` start at 0 and must be trained by gradient **ascent**: pass
    :meth:`parameters` to :func:`ascent_optimizer` (``maximize=True``), or build with
    ``flip_grad=True`` so that a descent optimizer ascends (the gradient reaching the
    multipliers is negated by a tensor hook).

    Args:
        flip_grad: Negate the multipliers' gradients (for one shared descent optimizer).
    """

    @typechecked
    def __init__(self, flip_grad: bool = False):
        super().__init__()
        self.flip_grad = flip_grad
        self.lambda_1 = nn.Parameter(torch.zeros(()))
        self.lambda_2 = nn.Parameter(torch.zeros(()))
        if flip_grad:
            for p in (self.lambda_1, self.lambda_2):
                p.register_hook(torch.neg)

    def forward(self, expected_sparsity: torch.Tensor, target: float) -> torch.Tensor:
        """The penalty for expected sparsity ``s`` (a differentiable scalar) and target ``t``."""
        gap = expected_sparsity - target
        return self.lambda_1 * gap + self.lambda_2 * gap * gap


@typechecked
def ascent_optimizer(
    params: Iterable[torch.Tensor], lr: float, kind: str = "sgd"
) -> torch.optim.Optimizer:
    """An optimizer that *maximizes* (gradient ascent), for the Lagrange multipliers.

    Args:
        params: The multipliers (``Lagrangian.parameters()``).
        lr: Learning rate (positive).
        kind: ``sgd`` (one step moves ``λ₁`` by ``+lr · (s - t)``) or ``adamw`` (no
            weight decay; CoFi's choice with a negative learning rate).
    """
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, maximize=True)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, maximize=True)
    raise ValueError(f"kind must be 'sgd' or 'adamw', got {kind!r}")


# --------------------------------------------------------------------- target ramp
@typechecked
def target_sparsity(
    step: int, warmup_steps: int, target: float, start: float = 0.0
) -> float:
    """``t(step) = start + (target - start) · min(1, step / warmup_steps)``.

    ``warmup_steps = 0`` gives ``target`` at every step (docs/methods.md §2).
    """
    if step < 0 or warmup_steps < 0:
        raise ValueError(
            f"step and warmup_steps must be >= 0, got {step}, {warmup_steps}"
        )
    if warmup_steps == 0:
        return float(target)
    return start + (target - start) * min(1.0, step / warmup_steps)
