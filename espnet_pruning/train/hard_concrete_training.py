"""HJ-Pruning inside an ESPnet training run: per-task Hard-Concrete gates (docs/methods.md §2).

A run with ``--hard_concrete_conf`` gives the model a :class:`TaskGates` as its submodule
``task_gates``: for every task one
:class:`~espnet_pruning.pruning.structured.GateSet` (a gate per attention head of the
encoder self-, decoder self- and cross-attention, a gate per FFN intermediate unit) over
the *shared* weights, and one
:class:`~espnet_pruning.pruning.hard_concrete.Lagrangian` holding that task's expected
sparsity at its target. A batch of task ``t`` runs with ``t``'s gates (sampled in
training, deterministic at evaluation) and its loss gains
``λ₁ (s_t − t(step)) + λ₂ (s_t − t(step))²``. ESPnet's one optimizer trains the weights,
every ``log α`` and the multipliers: the multipliers' gradients are negated
(``flip_grad``), so the same descent step *ascends* in ``λ``; ``log α`` and ``λ`` get the
learning rate ``reg_lr`` and no weight decay (their own parameter group, scaled by the
run's scheduler like every group). After every optimizer step ``log α`` is clamped and
the step counter behind the target ramp advances.

The gates, multipliers and step counter are parameters and buffers of the model, so
ESPnet's checkpoints and ``--resume`` carry them: they *are* the method's state.

Two modes, as the recipes use them:

* **single task** (the paper's): one run per task on a copy of θ0, ``--train_tasks t``;
* **multi-task**: one run of all tasks over shared weights, each batch of task ``t``
  training the weights under ``t``'s gates and ``t``'s gates only (Algorithm 2's
  analogue for gates). With ``--train_tasks`` a subset, only those tasks' gates train.

``hard_concrete_conf`` keys: :class:`~espnet_pruning.pruning.hard_concrete.HardConcreteHparams`'
fields, ``tasks`` (the tasks that get gates; default ``--train_tasks``, else every task
of the model) and ``seed`` (of the initial ``log α`` draws; each task's gates use
``seed`` plus the task's index in ``tasks``).
"""

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.pruning.hard_concrete import (
    HardConcreteHparams,
    Lagrangian,
    target_sparsity,
)
from espnet_pruning.pruning.structured import GateSet


class HardConcreteConfError(InputError):
    """An invalid ``hard_concrete_conf``."""


@dataclass(frozen=True)
class HardConcreteConf:
    """A parsed ``hard_concrete_conf``."""

    hparams: HardConcreteHparams
    tasks: Tuple[str, ...]
    seed: int


@typechecked
def parse_hard_concrete_conf(conf: Mapping[str, Any]) -> HardConcreteConf:
    """The hyperparameters, tasks and seed of a ``hard_concrete_conf`` mapping.

    Raises:
        HardConcreteConfError: Naming the bad key or value.
    """
    conf = dict(conf)
    tasks = conf.pop("tasks", None) or ()
    seed = conf.pop("seed", 0)
    known = {f.name for f in fields(HardConcreteHparams)} | {"tasks", "seed"}
    unknown = sorted(set(conf) - known)
    try:
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        if isinstance(tasks, str) or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"tasks must be a list of task names, got {tasks!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        hparams = HardConcreteHparams(**conf)
    except (TypeError, ValueError) as e:
        raise HardConcreteConfError(f"hard_concrete_conf: {e}") from None
    return HardConcreteConf(hparams, tuple(tasks), seed)


def _key(task: str) -> str:
    return task.replace(".", "/")


class TaskGates(nn.Module):
    """Every task's Hard-Concrete gates and Lagrange multipliers over one model.

    Args:
        model: The model whose heads and FFN units are gated (the gates are built for
            its structures; the model is referenced only while a task's gates are
            attached).
        conf: The run's hyperparameters, tasks and seed.
        train_tasks: The tasks whose gates and multipliers train (default: all).

    Raises:
        HardConcreteConfError: A train task without gates, or a model without heads
            or FFN units.
    """

    @typechecked
    def __init__(
        self,
        model: nn.Module,
        conf: HardConcreteConf,
        train_tasks: Optional[Sequence[str]] = None,
    ):
        super().__init__()
        if not conf.tasks:
            raise HardConcreteConfError("hard_concrete_conf: no tasks")
        self.hparams = conf.hparams
        self.tasks: Tuple[str, ...] = tuple(conf.tasks)
        trained = list(train_tasks) if train_tasks else list(self.tasks)
        missing = sorted(set(trained) - set(self.tasks))
        if missing:
            raise HardConcreteConfError(
                f"hard_concrete_conf: train task(s) {missing} have no gates (tasks: "
                f"{', '.join(self.tasks)})"
            )
        self.gate_sets = nn.ModuleDict(
            {
                _key(t): GateSet(model, conf.hparams, seed=conf.seed + i)
                for i, t in enumerate(self.tasks)
            }
        )
        if not next(iter(self.gate_sets.values())).structures:
            raise HardConcreteConfError(
                "hard_concrete_conf: the model has no attention heads or FFN units"
            )
        self.lagrangians = nn.ModuleDict(
            {_key(t): Lagrangian(flip_grad=True) for t in self.tasks}
        )
        # Optimizer steps done: the position on the target ramp (saved, resumed).
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        for t in self.tasks:
            train = t in trained
            self.gate_set(t).requires_grad_(train)
            self.lagrangians[_key(t)].requires_grad_(train)
        self.train_tasks = tuple(trained)
        self._attached: Optional[str] = None

    def gate_set(self, task: str) -> GateSet:
        """The gates of ``task``.

        Raises:
            HardConcreteConfError: For a task without gates.
        """
        if task not in self.tasks:
            raise HardConcreteConfError(
                f"task {task!r} has no gates (tasks: {', '.join(self.tasks)})"
            )
        return self.gate_sets[_key(task)]

    # ----------------------------------------------------------------- forward
    @typechecked
    def use(self, model: nn.Module, task: str) -> None:
        """Gate ``model`` with ``task``'s gates from now on (hooks; a task switch
        detaches the previous task's)."""
        gates = self.gate_set(task)
        if self._attached == task:
            return
        self.release()
        gates.attach(model)
        self._attached = task

    def release(self) -> None:
        """Detach the attached task's gates: the model is exactly dense again."""
        if self._attached is not None:
            self.gate_set(self._attached).detach()
            self._attached = None

    def target(self) -> float:
        """``t(step)``: the target of the expected sparsity at the current step."""
        hp = self.hparams
        return target_sparsity(
            int(self.steps), hp.sparsity_warmup_steps, hp.target_sparsity
        )

    @typechecked
    def penalty(self, task: str) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``task``'s Lagrangian term and its figures for the reporter.

        Returns:
            The term (0-dim, differentiable in ``log α`` and ``λ``), and
            ``expected_sparsity``, ``target_sparsity``, ``lambda_1``, ``lambda_2``.
        """
        expected = self.gate_set(task).expected_sparsity()
        target = self.target()
        lagrangian = self.lagrangians[_key(task)]
        term = lagrangian(expected, target)
        stats = dict(
            expected_sparsity=expected.detach(),
            target_sparsity=torch.tensor(target),
            lambda_1=lagrangian.lambda_1.detach().clone(),
            lambda_2=lagrangian.lambda_2.detach().clone(),
        )
        return term, stats

    # ----------------------------------------------------------------- optimizer
    def regularisation_parameters(self) -> List[nn.Parameter]:
        """Every ``log α`` and multiplier (their own learning rate, no weight decay)."""
        return list(self.parameters())

    @torch.no_grad()
    def after_step(self) -> None:
        """After an optimizer step: clamp every ``log α``, advance the ramp."""
        for t in self.train_tasks:
            self.gate_set(t).clamp_()
        self.steps += 1

    # ----------------------------------------------------------------- results
    def eval_gates(self, task: str) -> Dict[str, torch.Tensor]:
        """``task``'s deterministic gate vector of every structure."""
        return self.gate_set(task).eval_gates()


@typechecked
def hard_concrete_state(
    state: Mapping[str, torch.Tensor], prefix: str = "task_gates."
) -> Dict[str, torch.Tensor]:
    """The ``task_gates.*`` entries of a model state dict, prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@typechecked
def optimizer_groups(
    model: nn.Module, gates: TaskGates, optim_conf: Mapping[str, Any]
) -> List[Dict[str, Any]]:
    """ESPnet's optimizer parameters as two groups: the model's own parameters with
    ``optim_conf``, and the gates' ``log α`` and multipliers at ``reg_lr`` without
    weight decay."""
    reg = {id(p) for p in gates.regularisation_parameters()}
    own = [p for p in model.parameters() if id(p) not in reg]
    return [
        {"params": own},
        {
            "params": gates.regularisation_parameters(),
            "lr": gates.hparams.reg_lr,
            "weight_decay": 0.0,
        },
    ]
