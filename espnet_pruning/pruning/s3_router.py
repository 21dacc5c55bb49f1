"""S3-Router: per-task masks learned as real-valued scores over frozen shared weights.

S3-Router (Fu et al., NeurIPS 2022; docs/methods.md §5) keeps the shared weights ``θ``
frozen and gives every task ``t`` one real-valued score per routed weight, ``S_t``, of the
weight's shape. Task ``t``'s forward pass uses

    ``W_eff = TopK(|S_t|) ⊙ θ``

where ``TopK`` is the binary mask of the ``round(keep_ratio · n)`` largest ``|S_t|``
(``keep_ratio`` is the authors' ``prune_rate``, the *kept* fraction: 0.9 is 10 %
sparsity). The top-k has no useful derivative, so it is trained with a straight-through
estimator: the gradient reaching the binary mask is passed to ``|S_t|`` unchanged, so

    ``∂ℓ/∂S_t = sign(S_t) ⊙ (∂ℓ/∂W_eff ⊙ θ)``

and every score moves, including those of currently dropped weights. Only the scores are
trained; ``θ`` gets no gradient from the routed weights. Continual learning trains only
``S_{t_c}``: other tasks' forward passes read only their own scores and the unchanged ``θ``,
so their outputs cannot change. **S3-Router-P** (masks on FFN *and* attention, magnitude
initialisation, fine-tuned weights frozen) is ``modules="both"``, ``init="wmi"`` on the
already fine-tuned dense model; with no score update its masks are exactly layer-wise
(``scope="per_tensor"``) or global magnitude pruning.

Conventions (decisions where paper and code are silent):

* **Counts.** ``num_kept(n, keep_ratio)`` = ``round(keep_ratio · n)``, Python's round (half
  to even) of the exact decimal ``keep_ratio`` (as in
  :func:`~espnet_pruning.pruning.select.num_to_prune`), per tensor (``per_tensor``, the
  authors' code) or over all routed weights of the task (``global``). The authors' code
  floors the *pruned* count instead. ``prune_layerwise_magnitude(w, ones, 1 - keep)``
  rounds the pruned count, so it keeps one weight more exactly when ``keep · n`` is a
  half-integer; otherwise the two agree.
* **Ties.** Entries are ranked by ``|S|`` with ties broken by (sorted tensor name,
  row-major flat index), the earlier entry dropped first
  (:func:`~espnet_pruning.pruning.select.prune_smallest`): the masks are the same on every
  device and rank.
* **Sign at zero.** The gradient reaches ``S`` through ``abs``, whose derivative torch
  takes as ``sign(0) = 0``: a score that is exactly 0 gets a zero gradient and stays 0
  under SGD/Adam(W) (weight decay keeps 0 at 0). ``|S| = 0`` is the smallest possible
  score, so such a weight is dropped whenever anything is dropped, and its score never
  grows. Random initialisations give no exact zeros in practice; WMI gives one for every
  weight that is exactly 0 (e.g. zeroed by earlier pruning), which is then out of every
  mask that drops anything: the right outcome for a weight with no value.
* **Initialisations** (:func:`init_scores`): ``ri``, Kaiming uniform with ``a = √5`` (the
  authors' default, as ``nn.Linear`` initialises weights); ``wmi``, ``|θ|`` (the paper's
  "weight magnitudes"; the authors' code ``weight_magnitude`` instead stores the 0/1
  top-k mask of ``|θ|``, whose dropped scores sit at 0 and, by the previous point, never
  move); ``wmi_scaled``, ``|θ| / init_scale`` (the authors' ``weight_magnitude_with_scale``
  stores the signed ``θ / init_score_scale``, default scale 1, the setting of their
  S3-Router-P command; SGD and Adam(W) are symmetric under a sign flip, so ``|S|``, hence
  every mask, follows exactly the same trajectory with ``|θ| / scale``). The scale only
  sets the scores' size relative to the learning rate; it changes no mask at
  initialisation (exactly so for a power-of-two scale; another scale can merge adjacent
  magnitudes into ties after rounding). ``ori``, the ``ri`` draw re-ordered so that the
  j-th smallest ``|θ|`` gets the j-th smallest ``|S|`` (the authors'
  ``score[argsort(|w|)] = score[argsort(|score|)]``, with stable sorts): the same
  multiset of scores as ``ri`` with the same seed, and the ranking of ``|θ|``.
* **Seeds.** Each tensor's random draw uses its own generator, seeded from
  ``(seed, parameter name)`` (:func:`score_generator`), so a tensor's initial scores do
  not depend on which other tensors are routed. Every task added with the same seed
  starts from the same scores; tasks differ through their data.
* **Which weights** (:func:`routed_parameter_names`): ``weight`` of ``nn.Linear`` modules
  that are prunable under the :class:`~espnet_pruning.pruning.scope.PruningScope` and
  sit either in an ``nn.Sequential`` held as attribute ``mlp`` (Whisper's FFN:
  ``blocks.N.mlp.0``, ``blocks.N.mlp.2``), or in an openai-whisper
  ``whisper.model.MultiHeadAttention`` (``attn``/``cross_attn`` ``query``, ``key``,
  ``value``, ``out``). ESPnet's Whisper encoder and decoder wrap the same openai-whisper
  modules, so their names differ only by a prefix.
* **State.** The scores are the ``nn.Parameter`` objects of :class:`ScoreRouter` (the
  model is passed to each call, never held), so ``router.state_dict()`` is the checkpoint
  of the method, and nothing is added to the model's. Keys are
  ``task_scores.<task>.<parameter name>`` with every ``.`` written ``/`` (module and
  parameter names cannot contain ``.``; task and parameter names never contain ``/``, so
  the mapping is reversible).

Examples:
    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.mlp = nn.Sequential(nn.Linear(2, 2, bias=False))
    ...     def forward(self, x):
    ...         return self.mlp(x)
    >>> block = Block()
    >>> with torch.no_grad():
    ...     _ = block.mlp[0].weight.copy_(torch.tensor([[1.0, -4.0], [3.0, 2.0]]))
    >>> router = ScoreRouter(S3RouterHparams(keep_ratio=0.5, init="wmi"))
    >>> router.add_task("asr", block)
    >>> router.masks("asr")["mlp.0.weight"].int().tolist()
    [[0, 1], [1, 0]]
    >>> router(block, "asr", torch.ones(1, 2)).tolist()
    [[-4.0, 3.0]]
    >>> list(router.state_dict())
    ['task_scores.asr.mlp/0/weight']
"""

import hashlib
import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn
from typeguard import typechecked
from whisper.model import MultiHeadAttention

from espnet_pruning.hparams import Hparams
from espnet_pruning.pruning.masks import Mask, check_task_name
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names
from espnet_pruning.pruning.select import num_to_prune, prune_smallest

MODULES = ("ffn", "attn", "both")
INITS = ("ori", "ri", "wmi", "wmi_scaled")
SCOPES = ("per_tensor", "global")


# --------------------------------------------------------------------- hparams
@dataclass
class S3RouterHparams(Hparams):
    """Hyperparameters of S3-Router score learning (docs/methods.md §5).

    Args:
        keep_ratio: Fraction of the routed weights each task keeps (the authors'
            ``prune_rate``; 0.9 is 10 % sparsity), in ``(0, 1]``.
        modules: Which weights get scores: ``ffn`` (the paper's default), ``attn`` or
            ``both`` (S3-Router-P).
        init: Score initialisation: ``ori`` (the paper's best), ``ri``, ``wmi`` or
            ``wmi_scaled`` (see :func:`init_scores`).
        scope: Where the top-k is taken: ``per_tensor`` (the authors' code) or
            ``global`` (one ranking over all routed weights of a task).
        seed: Seed of the random initialisations (``ri``, ``ori``).
        init_scale: Divisor of ``wmi_scaled`` scores (the authors'
            ``init_score_scale``), finite and ``> 0``.
    """

    keep_ratio: float = field(
        default=0.9,
        metadata={"help": "kept fraction of the routed weights (0.9 = 10% sparsity)"},
    )
    modules: str = field(
        default="ffn",
        metadata={"help": "which weights get scores", "choices": MODULES},
    )
    init: str = field(
        default="ori",
        metadata={"help": "score initialisation", "choices": INITS},
    )
    scope: str = field(
        default="per_tensor",
        metadata={"help": "where the top-k is taken", "choices": SCOPES},
    )
    seed: int = field(default=0, metadata={"help": "seed of the ri and ori scores"})
    init_scale: float = field(
        default=1.0,
        metadata={"help": "wmi_scaled scores are |weight| / init_scale"},
    )

    def __post_init__(self):
        _check_keep_ratio(self.keep_ratio)
        for name, choices in (
            ("modules", MODULES),
            ("init", INITS),
            ("scope", SCOPES),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        _check_init_scale(self.init_scale)


def _check_keep_ratio(keep_ratio) -> None:
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
        raise ValueError(f"keep_ratio must be a number, got {keep_ratio!r}")
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")


def _check_init_scale(scale) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"init_scale must be a number, got {scale!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"init_scale must be finite and > 0, got {scale}")


# --------------------------------------------------------------------- routed weights
def _attention_types() -> Tuple[type, ...]:
    return (MultiHeadAttention,)


def _parent(owners: Mapping[str, nn.Module], module_name: str):
    """``(parent name, parent module)`` of a submodule, or ``(None, None)`` for the root."""
    if not module_name:
        return None, None
    parent_name = module_name.rpartition(".")[0]
    return parent_name, owners[parent_name]


@typechecked
def routed_parameter_names(
    model: nn.Module, modules: str = "ffn", scope: PruningScope = PruningScope()
) -> List[str]:
    """The sorted names of the weights that get S3-Router scores.

    A name is routed when it is prunable under ``scope``, is the ``weight`` of an
    ``nn.Linear``, and that Linear is a feed-forward layer (``ffn``: inside an
    ``nn.Sequential`` that its parent holds as attribute ``mlp``, as in Whisper's
    residual blocks) or an attention projection (``attn``: inside an openai-whisper
    ``whisper.model.MultiHeadAttention``, self- or cross-attention). Modules are
    recognised by type, not by name patterns.

    Args:
        model: The model (openai-whisper ``Whisper``, or ESPnet's wrapper of it).
        modules: ``ffn``, ``attn`` or ``both``.
        scope: Which parameters are prunable at all.

    Returns:
        Sorted parameter names (as ``model.named_parameters()`` reports them).

    Raises:
        ValueError: For an unknown ``modules``, or if no weight is routed.

    Examples:
        >>> block = nn.Module()
        >>> block.mlp = nn.Sequential(nn.Linear(2, 8), nn.GELU(), nn.Linear(8, 2))
        >>> block.query = nn.Linear(2, 2)  # not inside an attention module
        >>> routed_parameter_names(block, "ffn")
        ['mlp.0.weight', 'mlp.2.weight']
    """
    if modules not in MODULES:
        raise ValueError(f"modules must be one of {MODULES}, got {modules!r}")
    owners = dict(model.named_modules())
    attention = _attention_types()
    routed = []
    for name in prunable_parameter_names(model, scope):
        module_name, _, attr = name.rpartition(".")
        if attr != "weight" or not isinstance(owners[module_name], nn.Linear):
            continue
        parent_name, parent = _parent(owners, module_name)
        if parent is None:
            continue
        in_attention = bool(attention) and isinstance(parent, attention)
        in_ffn = False
        if isinstance(parent, nn.Sequential):
            _, holder = _parent(owners, parent_name)
            in_ffn = holder is not None and holder._modules.get("mlp") is parent
        if (in_ffn and modules in ("ffn", "both")) or (
            in_attention and modules in ("attn", "both")
        ):
            routed.append(name)
    if not routed:
        raise ValueError(
            f"no {modules} weight among the prunable parameters of "
            f"{type(model).__name__}"
        )
    return sorted(routed)


# --------------------------------------------------------------------- initialisation
@typechecked
def score_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator for the scores of tensor ``name``, seeded from ``(seed, name)``.

    The seed is the first 8 bytes of SHA-256 of ``"<seed>:<name>"``: stable across runs
    and processes (unlike ``hash``), and independent of the other routed tensors.
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@typechecked
def init_scores(
    weight: torch.Tensor,
    init: str,
    generator: Optional[torch.Generator] = None,
    init_scale: float = 1.0,
) -> torch.Tensor:
    """Initial S3-Router scores for one weight tensor.

    Args:
        weight: The frozen weight (at least 2-D for ``ri``/``ori``: Kaiming needs a
            fan-in); it is not modified.
        init: ``ri``: ``kaiming_uniform_(a=√5)`` drawn with ``generator``; ``wmi``:
            ``|weight|``; ``wmi_scaled``: ``|weight| / init_scale``; ``ori``: the ``ri``
            draw re-ordered so that the j-th smallest ``|weight|`` gets the j-th smallest
            ``|score|`` (stable sorts: ties in ``|weight|`` keep index order).
        generator: CPU generator of the random draw (the global RNG if None); unused by
            ``wmi`` and ``wmi_scaled``.
        init_scale: Divisor of ``wmi_scaled``.

    Returns:
        A new fp32 tensor of the weight's shape, on the weight's device.

    Raises:
        ValueError: For an unknown ``init``, a non-floating weight or a bad scale.

    Examples:
        >>> w = torch.tensor([[0.5, -2.0], [1.0, -0.1]])
        >>> init_scores(w, "wmi_scaled", init_scale=2.0).tolist()
        [[0.25, 1.0], [0.5, 0.05000000074505806]]
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if not weight.is_floating_point():
        raise ValueError(f"weight is {weight.dtype}, not floating point")
    w = weight.detach()
    if init in ("wmi", "wmi_scaled"):
        scores = w.abs().to(torch.float32)
        if init == "wmi_scaled":
            _check_init_scale(init_scale)
            scores = scores / init_scale
        return scores
    drawn = torch.empty(w.shape, dtype=torch.float32)
    nn.init.kaiming_uniform_(drawn, a=math.sqrt(5), generator=generator)
    drawn = drawn.to(w.device)
    if init == "ri":
        return drawn
    flat = drawn.reshape(-1)
    by_weight = torch.argsort(w.reshape(-1).abs().float(), stable=True)
    by_score = torch.argsort(flat.abs(), stable=True)
    ordered = torch.empty_like(flat)
    ordered[by_weight] = flat[by_score]
    return ordered.view(w.shape)


# --------------------------------------------------------------------- top-k
@typechecked
def num_kept(n: int, keep_ratio: float) -> int:
    """``round(keep_ratio · n)``: half to even, ``keep_ratio`` read as its decimal.

    Examples:
        >>> num_kept(5, 0.5), num_kept(5, 0.9), num_kept(1024, 0.9)
        (2, 4, 922)
    """
    return num_to_prune(n, keep_ratio)


@typechecked
def topk_masks(
    scores: Mapping[str, torch.Tensor], keep_ratio: float, scope: str = "per_tensor"
) -> Mask:
    """The binary top-k masks of ``|scores|`` (no gradient).

    Args:
        scores: Tensor name → floating scores (the sign is ignored).
        keep_ratio: Kept fraction in ``(0, 1]``.
        scope: ``per_tensor``: ``num_kept(numel, keep_ratio)`` ones in every tensor;
            ``global``: ``num_kept(total, keep_ratio)`` ones over all tensors.

    Returns:
        Tensor name → bool mask on the scores' device; ties are broken by (sorted
        tensor name, flat index), the earlier entry dropped first.

    Raises:
        ValueError: For a bad ``keep_ratio`` or ``scope``, no tensors, or NaN scores.

    Examples:
        >>> topk_masks({"w": torch.tensor([1.0, 1.0, -1.0, 0.0, 2.0])}, 0.6)["w"].tolist()
        [False, True, True, False, True]
    """
    _check_keep_ratio(keep_ratio)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if not scores:
        raise ValueError("no score tensors")
    ones = {
        n: torch.ones(s.shape, dtype=torch.bool, device=s.device)
        for n, s in scores.items()
    }
    if scope == "global":
        total = sum(s.numel() for s in scores.values())
        return prune_smallest(scores, ones, total - num_kept(total, keep_ratio))
    out: Mask = {}
    for name in sorted(scores):
        n = scores[name].numel()
        k = n - num_kept(n, keep_ratio)
        out.update(prune_smallest({name: scores[name]}, {name: ones[name]}, k))
    return out


class _StraightThroughTopK(torch.autograd.Function):
    """Forward: 0/1 top-k masks of the inputs; backward: the gradients unchanged."""

    @staticmethod
    def forward(ctx, names, keep_ratio, scope, *abs_scores):
        masks = topk_masks(dict(zip(names, abs_scores)), keep_ratio, scope)
        return tuple(masks[n].to(s.dtype) for n, s in zip(names, abs_scores))

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, None) + grads


@typechecked
def straight_through_topk(
    scores: Mapping[str, torch.Tensor], keep_ratio: float, scope: str = "per_tensor"
) -> Dict[str, torch.Tensor]:
    """The top-k masks of ``|scores|`` as 0/1 floats, with a straight-through gradient.

    The forward value is :func:`topk_masks`; the backward passes the gradient of each
    mask unchanged to ``|S|``, so ``∂ℓ/∂S = sign(S) ⊙ ∂ℓ/∂mask`` (0 where ``S == 0``).

    Args:
        scores: Tensor name → scores (typically ``nn.Parameter``).
        keep_ratio: Kept fraction in ``(0, 1]``.
        scope: ``per_tensor`` or ``global``.

    Returns:
        Tensor name → mask in the scores' dtype, in sorted name order.

    Examples:
        >>> s = torch.tensor([0.5, -3.0, 1.0, 2.0], requires_grad=True)
        >>> m = straight_through_topk({"s": s}, 0.5)["s"]
        >>> (m * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        >>> m.tolist(), s.grad.tolist()
        ([0.0, 1.0, 0.0, 1.0], [1.0, -2.0, 3.0, 4.0])
    """
    names = sorted(scores)
    masks = _StraightThroughTopK.apply(
        names, keep_ratio, scope, *(scores[n].abs() for n in names)
    )
    return dict(zip(names, masks))


# --------------------------------------------------------------------- router
def _key(name: str) -> str:
    """A ``ModuleDict``/``ParameterDict`` key for a task or parameter name."""
    return name.replace(".", "/")


def _name(key: str) -> str:
    return key.replace("/", ".")


class ScoreRouter(nn.Module):
    """Per-task S3-Router scores over the frozen weights of a model passed to each call.

    The router holds only scores: one ``nn.ParameterDict`` per task in the
    ``nn.ModuleDict`` :attr:`task_scores` (keys: see the module docstring), so its
    ``state_dict()`` is the method's checkpoint. To restore one, :meth:`add_task` every
    task on the same model, then ``load_state_dict``.

    Train task ``t`` with an optimizer over ``router.scores(t).values()`` only (or over
    ``router.parameters()`` with ``zero_grad(set_to_none=True)``, torch's default: Adam
    and weight decay skip a score whose ``.grad`` is None, but move one whose gradient
    is a zero tensor). Parameters of the model that are not routed (biases, LayerNorm,
    embeddings, unrouted Linear weights) are the model's own in :meth:`forward` and get
    gradients if they require them: freeze them, or train them on purpose (a head).

    Args:
        hparams: The method's hyperparameters (defaults if None).
        pruning_scope: Which parameters are prunable at all (default scope if None);
            routed names are a subset (:func:`routed_parameter_names`).

    Attributes:
        hparams: As given.
        pruning_scope: As given.
        task_scores: Task key → ``nn.ParameterDict`` of scores.
    """

    @typechecked
    def __init__(
        self,
        hparams: Optional[S3RouterHparams] = None,
        pruning_scope: Optional[PruningScope] = None,
    ):
        super().__init__()
        self.hparams = hparams if hparams is not None else S3RouterHparams()
        self.pruning_scope = (
            pruning_scope if pruning_scope is not None else PruningScope()
        )
        self.task_scores = nn.ModuleDict()

    def extra_repr(self) -> str:
        return f"hparams={self.hparams}, tasks={list(self.tasks)}"

    @property
    def tasks(self) -> Tuple[str, ...]:
        """Task names in insertion order."""
        return tuple(_name(k) for k in self.task_scores)

    def _table(self, task: str) -> nn.ParameterDict:
        key = _key(task)
        if key not in self.task_scores:
            raise KeyError(f"no scores for task {task!r}; known tasks: {self.tasks}")
        return self.task_scores[key]

    @typechecked
    def add_task(self, task: str, model: nn.Module) -> None:
        """Initialise task ``task``'s scores from ``model``'s current weights.

        Args:
            task: Task name (``[A-Za-z0-9_.-]+``, as in mask files).
            model: The shared model; its routed weights are read, not changed.

        Raises:
            MaskError: For an invalid task name.
            ValueError: If the task exists, its name clashes with an ``nn.Module``
                attribute (e.g. ``train``), or nothing is routed.
        """
        check_task_name(task)
        key = _key(task)
        if key in self.task_scores:
            raise ValueError(f"task {task!r} exists already")
        if hasattr(self.task_scores, key):
            raise ValueError(
                f"task name {task!r} clashes with an nn.Module attribute; rename it"
            )
        hp = self.hparams
        params = dict(model.named_parameters())
        names = routed_parameter_names(model, hp.modules, self.pruning_scope)
        table = nn.ParameterDict()
        for name in names:
            scores = init_scores(
                params[name], hp.init, score_generator(hp.seed, name), hp.init_scale
            )
            table[_key(name)] = nn.Parameter(scores)
        existing = next(self.parameters(), None)
        if existing is not None:  # keep every task where the router was moved
            table.to(existing.device)
        self.task_scores[key] = table

    @typechecked
    def remove_task(self, task: str) -> None:
        """Drop the scores of ``task`` (recreate the optimizer afterwards).

        Raises:
            KeyError: If the task is unknown.
        """
        self._table(task)
        del self.task_scores[_key(task)]

    @typechecked
    def scores(self, task: str) -> Dict[str, nn.Parameter]:
        """Parameter name → score ``nn.Parameter`` of ``task`` (live, sorted by name).

        Raises:
            KeyError: If the task is unknown.
        """
        return {_name(k): p for k, p in sorted(self._table(task).items())}

    @typechecked
    def routed_names(self, task: str) -> List[str]:
        """The sorted names of the parameters ``task`` routes."""
        return list(self.scores(task))

    @typechecked
    def masks(self, task: str, model: Optional[nn.Module] = None) -> Mask:
        """The current binary masks of ``task`` (``TopK(|S|)``), detached.

        Args:
            task: The task.
            model: If given, an all-ones mask is added for every parameter of ``model``
                that is prunable under :attr:`pruning_scope` but not routed, so the
                result fits ``MaskSet.from_model(model, router.pruning_scope, ...)``.

        Returns:
            Parameter name → bool tensor on the scores' device.

        Raises:
            KeyError: If the task is unknown.
        """
        scores = self.scores(task)
        with torch.no_grad():
            masks = topk_masks(
                {n: s.detach() for n, s in scores.items()},
                self.hparams.keep_ratio,
                self.hparams.scope,
            )
        if model is not None:
            params = dict(model.named_parameters())
            device = next(iter(masks.values())).device
            for name in prunable_parameter_names(model, self.pruning_scope):
                if name not in masks:
                    masks[name] = torch.ones(
                        params[name].shape, dtype=torch.bool, device=device
                    )
        return dict(sorted(masks.items()))

    @typechecked
    def effective_parameters(
        self, model: nn.Module, task: str
    ) -> Dict[str, torch.Tensor]:
        """``W_eff = TopK(|S_t|) ⊙ θ`` for the routed parameters of ``task``.

        ``θ`` enters detached, so the routed weights never get a gradient; the mask
        carries the straight-through gradient to the scores. ``W_eff`` has ``θ``'s dtype
        and device.

        Raises:
            KeyError: If the task is unknown.
            ValueError: If ``model`` lacks a routed parameter or its shape differs.
        """
        scores = self.scores(task)
        params = dict(model.named_parameters())
        for name, s in scores.items():
            if name not in params:
                raise ValueError(f"task {task!r} routes {name!r}, not in the model")
            if params[name].shape != s.shape:
                raise ValueError(
                    f"task {task!r}: {name!r} has shape {tuple(params[name].shape)} "
                    f"in the model, {tuple(s.shape)} in the scores"
                )
        masks = straight_through_topk(
            scores, self.hparams.keep_ratio, self.hparams.scope
        )
        out = {}
        for name, m in masks.items():
            theta = params[name].detach()
            out[name] = m.to(device=theta.device, dtype=theta.dtype) * theta
        return out

    @typechecked
    def forward(self, model: nn.Module, task: str, *args, **kwargs):
        """``model(*args, **kwargs)`` with task ``task``'s routed weights substituted.

        Args:
            model: The shared model (unchanged).
            task: The task whose scores route the weights.
            *args: Positional arguments of ``model.forward``.
            **kwargs: Keyword arguments of ``model.forward``.

        Returns:
            Whatever ``model`` returns.
        """
        return torch.func.functional_call(
            model,
            self.effective_parameters(model, task),
            args,
            kwargs,
            strict=False,
            tie_weights=True,
        )
