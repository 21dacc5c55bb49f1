"""S3-Router inside an ESPnet training run: per-task scores over frozen weights.

A run with ``--s3_router_conf`` (docs/methods.md §5) gives the model a
:class:`TaskScoreRouter` as its submodule ``score_router``: one set of real-valued scores
per task (:class:`~espnet_pruning.pruning.s3_router.ScoreRouter`). Each batch of task
``t`` runs the encoder and decoder on ``TopK(|S_t|) ⊙ θ``; the straight-through gradient
reaches only ``S_t``. Because the scores are parameters of the model, ESPnet's optimizer
trains them and its checkpoints (``checkpoint.pth``, ``{N}epoch.pth``, averages) and
``--resume`` carry them: the scores *are* the method's state. The model's own state-dict
keys are unchanged; the router adds ``score_router.task_scores.<task>.<name>`` (``.`` of
task and parameter names written ``/``) and ``score_router.initialised.<task>``.

**When the scores are initialised.** ESPnet builds the model, then the optimizer, and
only then loads ``--init_param`` (θ0); a resumed run then loads ``checkpoint.pth``. WMI
and ORI need θ0's magnitudes, so the values the scores get at construction are
placeholders: every task's scores are (re)initialised from the model's current routed
weights at the **first forward pass** that finds the task's flag
``score_router.initialised.<task>`` at 0, and the flag is set to 1. The flag is a buffer
of the router, so it is saved and restored with the scores: a resumed run (flags 1 in
``checkpoint.pth``) never re-initialises, and ``--init_param`` of an earlier S3-Router
run restores the scores *and* flags of its tasks, while a task new to the run (continual
learning) has no entry there, keeps flag 0 and is initialised from θ. The routed weights
are frozen, so the first forward reads exactly θ0 whenever it happens. The scores are
written in place (the optimizer holds the same tensors); all ranks compute the same
values.

**What trains.** Every routed weight is frozen (``requires_grad=False``). By default the
rest of the model is frozen too (the paper's "fixes all other weights", §4.1): only
scores train, and θ stays bit-identical, also in averaged checkpoints (repaired by
:class:`~espnet_pruning.train.trainer.USLUTrainer`). ``train_unrouted: true`` trains the
parameters that are not routed (biases, LayerNorm, embeddings, unrouted Linear weights)
as well: they are shared, so that run is no longer free of forgetting. Only the scores of
the run's train tasks (``--train_tasks``; default all routed tasks) require gradients:
continual learning trains ``S_{t_c}`` alone, so every other task's forward reads the same
scores and the same θ as before, bit for bit.

``s3_router_conf`` keys: :class:`~espnet_pruning.pruning.s3_router.S3RouterHparams`'
fields, ``pruning_scope`` (a :class:`~espnet_pruning.pruning.scope.PruningScope`
mapping: the routed weights are a subset of the prunable ones), ``tasks`` (the tasks that
get scores; default ``--train_tasks``, else every task of the model) and
``train_unrouted`` (default false).
"""

import logging
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.pruning.masks import Mask
from espnet_pruning.pruning.s3_router import (
    S3RouterHparams,
    ScoreRouter,
    init_scores,
    score_generator,
)
from espnet_pruning.pruning.scope import PruningScope

#: The model attribute (and state-dict prefix) of the router.
ROUTER = "score_router"

#: ``s3_router_conf`` keys beyond :class:`S3RouterHparams`' fields.
EXTRA_KEYS = ("pruning_scope", "tasks", "train_unrouted")


class S3RouterConfError(InputError):
    """An invalid ``s3_router_conf`` (or one combined with an exclusive option)."""


@dataclass(frozen=True)
class S3RouterConf:
    """A parsed ``s3_router_conf``.

    Args:
        hparams: Score hyperparameters.
        pruning_scope: Which parameters are prunable (routed ones are a subset).
        tasks: Tasks that get scores (None: ``--train_tasks``, else all).
        train_unrouted: Train the parameters that are not routed.
    """

    hparams: S3RouterHparams
    pruning_scope: PruningScope
    tasks: Optional[Tuple[str, ...]]
    train_unrouted: bool


@typechecked
def parse_s3_router_conf(conf: Mapping[str, Any]) -> S3RouterConf:
    """The parsed form of an ``s3_router_conf`` mapping.

    Raises:
        S3RouterConfError: Naming the bad key or value.

    Examples:
        >>> parse_s3_router_conf({"keep_ratio": 0.5, "init": "wmi"}).hparams.init
        'wmi'
        >>> parse_s3_router_conf({"keep": 0.5})
        Traceback (most recent call last):
        ...
        espnet_pruning.train.s3_router_training.S3RouterConfError: s3_router_conf: unknown key(s) ['keep']; known: ['init', 'init_scale', 'keep_ratio', 'modules', 'pruning_scope', 'scope', 'seed', 'tasks', 'train_unrouted']
    """
    conf = dict(conf)
    known = {f.name for f in fields(S3RouterHparams)} | set(EXTRA_KEYS)
    unknown = sorted(set(conf) - known)
    if unknown:
        raise S3RouterConfError(
            f"s3_router_conf: unknown key(s) {unknown}; known: {sorted(known)}"
        )
    tasks = conf.pop("tasks", None)
    if tasks is not None:
        if isinstance(tasks, str) or not all(isinstance(t, str) and t for t in tasks):
            raise S3RouterConfError(
                f"s3_router_conf: tasks must be a list of task names, got {tasks!r}"
            )
        if not tasks:
            raise S3RouterConfError("s3_router_conf: tasks is empty")
        tasks = tuple(tasks)
    train_unrouted = conf.pop("train_unrouted", False)
    if not isinstance(train_unrouted, bool):
        raise S3RouterConfError(
            f"s3_router_conf: train_unrouted must be true or false, got "
            f"{train_unrouted!r}"
        )
    try:
        scope = PruningScope.from_dict(conf.pop("pruning_scope", None))
    except (TypeError, ValueError) as e:
        raise S3RouterConfError(f"s3_router_conf: pruning_scope: {e}") from None
    try:
        hparams = S3RouterHparams(**conf)
    except (TypeError, ValueError) as e:
        raise S3RouterConfError(f"s3_router_conf: {e}") from None
    return S3RouterConf(hparams, scope, tasks, train_unrouted)


# --------------------------------------------------------------------- state keys
@typechecked
def score_state_key(task: str, name: str, prefix: str = ROUTER + ".") -> str:
    """The state-dict key of task ``task``'s scores of parameter ``name``.

    Examples:
        >>> score_state_key("er_iemocap", "encoder.blocks.0.mlp.0.weight")
        'score_router.task_scores.er_iemocap.encoder/blocks/0/mlp/0/weight'
    """
    return f"{prefix}task_scores.{task.replace('.', '/')}.{name.replace('.', '/')}"


@typechecked
def scores_from_state(
    state: Mapping[str, torch.Tensor], task: str, prefix: str = ROUTER + "."
) -> Dict[str, torch.Tensor]:
    """Parameter name → scores of ``task`` in a model state dict (sorted by name).

    Raises:
        InputError: If the state holds no scores of ``task``.
    """
    head = f"{prefix}task_scores.{task.replace('.', '/')}."
    out = {
        k[len(head) :].replace("/", "."): v
        for k, v in state.items()
        if k.startswith(head)
    }
    if not out:
        raise InputError(f"no S3-Router scores of task {task!r} (keys {head}*)")
    return dict(sorted(out.items()))


# --------------------------------------------------------------------- router
class TaskScoreRouter(ScoreRouter):
    """A :class:`ScoreRouter` whose scores are initialised lazily, once per task.

    Each task has a flag buffer ``initialised.<task>`` (int64, 0 until
    :meth:`ensure_initialised` has written the task's scores from the model's weights;
    ESPnet's checkpoint averaging adds integer entries up, so any non-zero value counts
    as set). The flags travel with the scores in every checkpoint.

    Args:
        hparams: The method's hyperparameters.
        pruning_scope: Which parameters are prunable.
        train_unrouted: Whether the run trains the parameters that are not routed
            (recorded here for the trainer's repair of averaged checkpoints).
    """

    @typechecked
    def __init__(
        self,
        hparams: Optional[S3RouterHparams] = None,
        pruning_scope: Optional[PruningScope] = None,
        train_unrouted: bool = False,
    ):
        super().__init__(hparams, pruning_scope)
        self.train_unrouted = train_unrouted
        self.initialised = nn.Module()

    @typechecked
    def add_task(self, task: str, model: nn.Module) -> None:
        """Add ``task``'s scores (placeholders until :meth:`ensure_initialised`)."""
        super().add_task(task, model)
        device = next(iter(self.scores(task).values())).device
        self.initialised.register_buffer(
            task.replace(".", "/"), torch.zeros((), dtype=torch.int64, device=device)
        )

    @typechecked
    def remove_task(self, task: str) -> None:
        """Drop the scores and the flag of ``task``."""
        super().remove_task(task)
        del self.initialised._buffers[task.replace(".", "/")]

    def is_initialised(self, task: str) -> bool:
        """Whether ``task``'s scores hold their initial values or trained ones."""
        return bool(self.initialised._buffers[task.replace(".", "/")].item())

    @torch.no_grad()
    def ensure_initialised(self, model: nn.Module) -> List[str]:
        """Initialise, from ``model``'s current weights, every task whose flag is 0.

        Args:
            model: The model whose routed weights give WMI/ORI their magnitudes.

        Returns:
            The tasks initialised now (usually all at the first forward, then none).
        """
        flags = self.initialised._buffers
        if bool(torch.stack([f.cpu() for f in flags.values()]).all()):
            return []
        hp = self.hparams
        params = dict(model.named_parameters())
        done = []
        for task in self.tasks:
            flag = flags[task.replace(".", "/")]
            if int(flag) != 0:
                continue
            for name, scores in self.scores(task).items():
                init = init_scores(
                    params[name], hp.init, score_generator(hp.seed, name), hp.init_scale
                )
                scores.copy_(init.to(device=scores.device, dtype=scores.dtype))
            flag.fill_(1)
            done.append(task)
        logging.info(
            f"S3-Router: scores of {', '.join(done)} initialised ({hp.init}) from the "
            f"current weights; keep ratio {hp.keep_ratio}, {hp.modules}, {hp.scope}"
        )
        return done

    def frozen_scope(self, prefix: str = ROUTER + ".") -> Tuple[Mask, str]:
        """What a run keeps exact, for :func:`~espnet_pruning.train.trainer.repair_averaged`.

        Returns:
            ``(trainable, unmasked_update)``: every score entry trainable; the routed
            weights frozen; the rest ``allow`` with ``train_unrouted``, else ``freeze``
            (which also keeps the flags at 1).
        """
        trainable: Mask = {}
        for task in self.tasks:
            for name, s in self.scores(task).items():
                trainable[score_state_key(task, name, prefix)] = torch.ones(
                    s.shape, dtype=torch.bool
                )
                if self.train_unrouted:
                    trainable[name] = torch.zeros(s.shape, dtype=torch.bool)
        return trainable, "allow" if self.train_unrouted else "freeze"


@typechecked
def freeze_for_routing(
    model: nn.Module, router: TaskScoreRouter, train_tasks: Sequence[str]
) -> None:
    """Set ``requires_grad`` for an S3-Router run.

    Routed weights: False. Other model parameters: ``router.train_unrouted``. Scores:
    True for ``train_tasks``, False for the other tasks (their scores stay exact).

    Args:
        model: The model, with ``router`` attached as ``score_router``.
        router: Its router.
        train_tasks: The tasks whose scores train.

    Raises:
        S3RouterConfError: A train task without scores.
    """
    missing = sorted(set(train_tasks) - set(router.tasks))
    if missing:
        raise S3RouterConfError(
            f"s3_router_conf: train task(s) {missing} have no scores (tasks: "
            f"{list(router.tasks)})"
        )
    routed = {n for t in router.tasks for n in router.routed_names(t)}
    own = {id(p) for p in router.parameters()}
    for name, p in model.named_parameters():
        if id(p) not in own:
            p.requires_grad_(router.train_unrouted and name not in routed)
    for task in router.tasks:
        for s in router.scores(task).values():
            s.requires_grad_(task in train_tasks)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_model = sum(p.numel() for p in model.parameters() if id(p) not in own)
    logging.info(
        f"S3-Router: {len(routed)} routed tensors of {list(router.tasks)}; scores of "
        f"{list(train_tasks)} train; {n_train} trainable parameters, the model's "
        f"{n_model} weights {'partly ' if router.train_unrouted else ''}frozen"
    )
