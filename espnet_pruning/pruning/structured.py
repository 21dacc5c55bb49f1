"""Structured HJ-Pruning of Whisper: head and FFN-unit gates, expected size, compilation.

HJ-Pruning (docs/methods.md §2) gates whole structures; on openai-whisper models
(``whisper.model.Whisper``, and the same modules wrapped under a prefix as ESPnet's Whisper
encoder and decoder do) the structures are, found by module type:

* every attention head of every ``whisper.model.MultiHeadAttention`` held by a
  ``ResidualAttentionBlock`` (encoder self-attention, decoder self-attention and decoder
  cross-attention): head ``k`` owns rows ``k·d_head:(k+1)·d_head`` of ``query``, ``key``,
  ``value`` (weights and biases) and the same columns of ``out`` (Eq. 7);
* every intermediate unit of a block's ``mlp = Sequential(Linear, GELU, Linear)``: unit
  ``i`` owns row ``i`` of ``mlp.0`` (and its bias) and column ``i`` of ``mlp.2`` (Eq. 8).

:func:`structures` lists them; a :class:`GateSet` holds one
:class:`~espnet_pruning.pruning.hard_concrete.HardConcrete` per structure group (one
attention module, one FFN) for **one** task. ``GateSet.attach(model)`` registers forward
pre-hooks that multiply the *input* of ``attn.out`` by ``z_head`` (each head's
``d_head`` columns by its gate) and the input of ``mlp.2`` by ``z_ffn``. The model's
parameters, buffers and ``state_dict`` keys are not touched, and ``detach()`` restores the
dense model exactly. Several tasks are several gate sets over the same weights; attach one
at a time.

Conventions (decisions where the paper is silent):

* **Training or evaluation gates** follow the *model's* mode: a forward of the attached
  root module in ``train()`` mode draws one fresh sample of every gate (Eq. 2) before it
  runs, shared by all the hooks of that forward; in ``eval()`` mode it uses the
  deterministic gates (DPHuBERT convention, see
  :mod:`~espnet_pruning.pruning.hard_concrete`). A gated submodule called on its own
  (e.g. the decoder alone) draws its gate per call, by that submodule's mode.
* **Size** (``variant="size"``): the expected sparsity is
  ``1 - Σ_g E[kept units_g] · params_per_unit_g / Σ_g count_g · params_per_unit_g`` over the
  gated structures only (LayerNorms, convs, embeddings, ``out``/``mlp.2`` biases are not
  gated and not counted). Per head: ``query``, ``key``, ``value`` rows (``d_in · d_head``
  each, plus ``d_head`` per existing bias; Whisper's ``key`` has none) and ``out`` columns
  (``d_head · d``); per FFN unit: ``d + 1 + d`` (``mlp.0`` row and bias, ``mlp.2`` column).
* **MAC** (``variant="mac"``): the same ratio in multiply-accumulates of a virtual input of
  ``T = round(50 · seconds)`` encoder frames (Whisper's conv front-end gives 1500 frames
  per 30 s: ``T = 500`` for the paper's 10 s) and ``L`` decoder tokens, every count linear
  in the expected number of kept units (Eqs. 10–11 with expected ``h`` and ``d_int``):

  - attention with ``h`` heads, ``T_q`` queries over ``T_kv`` keys/values:
    ``2·T_q·h·d·d_head`` (query, out) ``+ 2·T_kv·h·d·d_head`` (key, value)
    ``+ 2·T_q·T_kv·h·d_head`` (scores, weighted sum). Encoder self-attention
    (``T_q = T_kv = T``) is Eq. 10, ``4·T·h·d·d_head + 2·T²·h·d_head``; decoder
    self-attention is the same with ``L`` (a full teacher-forced pass, the causal mask not
    discounted); cross-attention has ``T_q = L``, ``T_kv = T``:
    ``2·L·h·d·d_head + 2·T·h·d·d_head + 2·L·T·h·d_head``;
  - FFN: ``2·T_q·d·d_int`` (Eq. 11), ``T_q = T`` in the encoder, ``L`` in the decoder.

  Softmax, LayerNorm, biases, the convs and the vocabulary projection are not counted
  (they are not gated). openai-whisper's own ``transcribe`` pads to 30 s (``T = 1500``);
  ESPnet's wrapper runs the true length.
* **Compilation** (:func:`compile_pruned`): a deep copy in which every head or unit whose
  evaluation gate is exactly 0 is removed and the kept units' soft gate values are
  folded into the columns of ``out`` / ``mlp.2``, so the compiled model's outputs equal
  the gated model's in ``eval()``. ``n_head`` becomes the number of kept heads, so
  Whisper's scale ``(n_state // n_head) ** -0.25`` still sees ``d_head``. A module that
  loses *all* its heads becomes :class:`HeadlessAttention`, an FFN that loses all units
  :class:`UnitlessFFN`: each outputs only the bias of its dropped output projection
  (zeros without one), exactly what the gated module outputs with all gates 0. The
  LayerNorm in front of such a module stays (its output is unused; its ``2·d``
  parameters are not gated and not counted). Whisper's ``alignment_heads`` buffer (word
  timestamps only) is not re-indexed. Whisper's kv-cache decoding works unchanged.

Examples:
    >>> from whisper.model import ModelDimensions, Whisper
    >>> _ = torch.manual_seed(0)
    >>> model = Whisper(ModelDimensions(8, 4, 8, 2, 1, 10, 4, 8, 2, 1))
    >>> for s in structures(model):
    ...     print(s.name, s.kind, s.count, s.params_per_unit)
    encoder.blocks.0.attn self_attn 2 136
    encoder.blocks.0.mlp ffn 32 17
    decoder.blocks.0.attn self_attn 2 136
    decoder.blocks.0.cross_attn cross_attn 2 136
    decoder.blocks.0.mlp ffn 32 17
    >>> gates = GateSet(model, HardConcreteHparams(ffn_init_drop=0.5))
    >>> with torch.no_grad():
    ...     for name, gate in gates.gates.items():
    ...         _ = gate.log_alpha.fill_(5.0 if "attn" in name else -10.0)
    >>> gates.kept_units()["decoder.blocks.0.mlp"], gates.removed_params()
    (0, 1088)
    >>> small = compile_pruned(model, gates)
    >>> type(small.decoder.blocks[0].mlp).__name__
    'UnitlessFFN'
    >>> sum(p.numel() for p in model.parameters()) - sum(
    ...     p.numel() for p in small.parameters())
    1088
"""

import copy
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn
from typeguard import typechecked
from whisper.model import MultiHeadAttention, ResidualAttentionBlock

from espnet_pruning.pruning.hard_concrete import HardConcrete, HardConcreteHparams
from espnet_pruning.pruning.masks import MaskSet

#: Encoder frames per second of audio after Whisper's conv front-end (1500 per 30 s).
FRAMES_PER_SECOND = 50
KINDS = ("self_attn", "cross_attn", "ffn")


# --------------------------------------------------------------------- structures
@dataclass(frozen=True)
class Structure:
    """One group of prunable units: the heads of one attention or the units of one FFN.

    Attributes:
        name: Module path of the ``MultiHeadAttention`` or of the ``mlp`` Sequential.
        kind: ``self_attn``, ``cross_attn`` or ``ffn``.
        decoder: Whether the block is a decoder block (it has cross-attention).
        count: Number of units (heads or intermediate units).
        params_per_unit: Parameters a unit owns (see the module docstring).
        d_model: Model width ``d`` (input width of the projections).
        unit_width: ``d_head`` for heads, 1 for FFN units.
    """

    name: str
    kind: str
    decoder: bool
    count: int
    params_per_unit: int
    d_model: int
    unit_width: int

    @property
    def key(self) -> str:
        """``name`` with ``.`` written ``/`` (a key of ``nn.ModuleDict``)."""
        return self.name.replace(".", "/")


def _bias_size(linear: nn.Linear) -> int:
    return 0 if linear.bias is None else 1


def _head_structure(name: str, attn: MultiHeadAttention, kind: str, decoder: bool):
    n_head = attn.n_head
    width = attn.query.out_features
    if width % n_head:
        raise ValueError(f"{name}: {width} query features for {n_head} heads")
    d_head = width // n_head
    per_head = (
        sum(
            (lin.in_features + _bias_size(lin)) * d_head
            for lin in (attn.query, attn.key, attn.value)
        )
        + d_head * attn.out.out_features
    )
    return Structure(
        name, kind, decoder, n_head, per_head, attn.query.in_features, d_head
    )


def _is_ffn(mlp) -> bool:
    return (
        isinstance(mlp, nn.Sequential)
        and len(mlp) == 3
        and isinstance(mlp[0], nn.Linear)
        and isinstance(mlp[2], nn.Linear)
    )


@typechecked
def structures(model: nn.Module) -> List[Structure]:
    """The prunable structures of an openai-whisper model, in module order.

    Every ``whisper.model.ResidualAttentionBlock`` contributes its ``attn`` (``self_attn``),
    its ``cross_attn`` if any (``cross_attn``; such a block is a decoder block) and its
    ``mlp`` (``ffn``). Attention modules that are not ``MultiHeadAttention`` (e.g. a
    compiled :class:`HeadlessAttention`) and FFNs that are not ``Sequential(Linear, ·,
    Linear)`` are skipped (docs/methods.md §2).

    Args:
        model: ``whisper.model.Whisper``, or a module holding its encoder/decoder.

    Returns:
        One :class:`Structure` per attention module and FFN.

    Raises:
        ValueError: If the model has no such structure.
    """
    found = []
    for block_name, block in model.named_modules():
        if not isinstance(block, ResidualAttentionBlock):
            continue
        prefix = f"{block_name}." if block_name else ""
        decoder = block.cross_attn is not None
        for attr, kind in (("attn", "self_attn"), ("cross_attn", "cross_attn")):
            attn = getattr(block, attr)
            if isinstance(attn, MultiHeadAttention):
                found.append(_head_structure(prefix + attr, attn, kind, decoder))
        if _is_ffn(block.mlp):
            fc1, fc2 = block.mlp[0], block.mlp[2]
            per_unit = fc1.in_features + _bias_size(fc1) + fc2.out_features
            found.append(
                Structure(
                    prefix + "mlp",
                    "ffn",
                    decoder,
                    fc1.out_features,
                    per_unit,
                    fc1.in_features,
                    1,
                )
            )
    if not found:
        raise ValueError(f"no Whisper attention or FFN in {type(model).__name__}")
    return found


@typechecked
def frames_for_seconds(seconds: float) -> int:
    """Encoder frames of ``seconds`` of audio: ``round(50 · seconds)`` (500 for 10 s)."""
    return round(FRAMES_PER_SECOND * seconds)


@typechecked
def macs_per_unit(structure: Structure, frames: int, tokens: int) -> int:
    """Multiply-accumulates of one unit (head or FFN unit) of ``structure``.

    ``frames`` is the encoder length ``T``, ``tokens`` the decoder length ``L``. A
    structure's MACs are this times its number of kept units (docs/methods.md §2; the
    module docstring has the formulas).
    """
    d, d_head = structure.d_model, structure.unit_width
    t_q = tokens if structure.decoder else frames
    if structure.kind == "ffn":
        return 2 * t_q * d
    t_kv = frames if structure.kind == "cross_attn" else t_q
    return 2 * t_q * d * d_head + 2 * t_kv * d * d_head + 2 * t_q * t_kv * d_head


# --------------------------------------------------------------------- gates
class GateSet(nn.Module):
    """Hard-Concrete gates of one task over every head and FFN unit of a Whisper model.

    The gates are this module's parameters (``gates.<structure key>.log_alpha``); the model
    is only referenced while attached (docs/methods.md §2).

    Args:
        model: The model whose structures are gated (:func:`structures`).
        hparams: Initial drop rates, sparsity variant and MAC input length.
        seed: Seed of the initial ``log α`` draws (drawn in structure order).
    """

    @typechecked
    def __init__(
        self,
        model: nn.Module,
        hparams: HardConcreteHparams = HardConcreteHparams(),
        seed: int = 0,
    ):
        super().__init__()
        self.hparams = hparams
        self.structures: Tuple[Structure, ...] = tuple(structures(model))
        self.frames = frames_for_seconds(hparams.mac_input_seconds)
        self.tokens = hparams.mac_text_length
        generator = torch.Generator().manual_seed(seed)
        self.gates = nn.ModuleDict(
            {
                s.key: HardConcrete(
                    s.count,
                    init_drop=(
                        hparams.ffn_init_drop
                        if s.kind == "ffn"
                        else hparams.head_init_drop
                    ),
                    generator=generator,
                )
                for s in self.structures
            }
        )
        self._handles: list = []
        self._drawn: Optional[Dict[str, torch.Tensor]] = None

    # ----------------------------------------------------------------- expectations
    def expected_units(self) -> Dict[str, torch.Tensor]:
        """Expected kept units per structure name, ``l0_norm`` of its gate (Eq. 3)."""
        return {s.name: self.gates[s.key].l0_norm() for s in self.structures}

    def _weighted(self, weights: Mapping[str, int]) -> torch.Tensor:
        units = self.expected_units()
        return sum(units[s.name].double() * weights[s.name] for s in self.structures)

    def total_params(self) -> int:
        """Parameters of all gated structures (dense)."""
        return sum(s.count * s.params_per_unit for s in self.structures)

    def expected_params(self) -> torch.Tensor:
        """Expected kept parameters of the gated structures (float64, differentiable)."""
        return self._weighted({s.name: s.params_per_unit for s in self.structures})

    def unit_macs(self) -> Dict[str, int]:
        """MACs of one unit of each structure at ``(self.frames, self.tokens)``."""
        return {
            s.name: macs_per_unit(s, self.frames, self.tokens) for s in self.structures
        }

    def total_macs(self) -> int:
        """MACs of all gated structures (dense) at the virtual input length."""
        unit = self.unit_macs()
        return sum(s.count * unit[s.name] for s in self.structures)

    def expected_macs(self) -> torch.Tensor:
        """Expected MACs of the gated structures (float64, differentiable)."""
        return self._weighted(self.unit_macs())

    def expected_sparsity(self) -> torch.Tensor:
        """``s(α)``: 1 - expected / dense, in parameters (``size``) or MACs (``mac``)."""
        if self.hparams.variant == "mac":
            kept = self.expected_macs() / self.total_macs()
        else:
            kept = self.expected_params() / self.total_params()
        return (1.0 - kept).float()

    @torch.no_grad()
    def clamp_(self) -> "GateSet":
        """Clamp every ``log α`` to CoFi's range (call after every optimizer step)."""
        for gate in self.gates.values():
            gate.clamp_()
        return self

    # ----------------------------------------------------------------- fixed gates
    @torch.no_grad()
    def eval_gates(self) -> Dict[str, torch.Tensor]:
        """The deterministic (evaluation) gate vector of every structure, by name."""
        return {s.name: self.gates[s.key].deterministic() for s in self.structures}

    def kept_units(self) -> Dict[str, int]:
        """Units whose evaluation gate is non-zero, per structure name."""
        return {n: int((z > 0).sum()) for n, z in self.eval_gates().items()}

    def removed_params(self) -> int:
        """Parameters :func:`compile_pruned` removes (units with evaluation gate 0)."""
        kept = self.kept_units()
        return sum(
            (s.count - kept[s.name]) * s.params_per_unit for s in self.structures
        )

    # ----------------------------------------------------------------- hooks
    def _gate(self, key: str, training: bool) -> torch.Tensor:
        if self._drawn is not None:
            return self._drawn[key]
        gate = self.gates[key]
        return gate.sample() if training else gate.deterministic()

    def _draw(self, module: nn.Module, args) -> None:
        self._drawn = {
            key: (gate.sample() if module.training else gate.deterministic())
            for key, gate in self.gates.items()
        }

    def _forget(self, module: nn.Module, args, output) -> None:
        self._drawn = None

    def _head_hook(self, key: str, d_head: int):
        def hook(module: nn.Module, args):
            x = args[0]
            z = self._gate(key, module.training).repeat_interleave(d_head)
            return (x * z.to(device=x.device, dtype=x.dtype),) + tuple(args[1:])

        return hook

    def _unit_hook(self, key: str):
        def hook(module: nn.Module, args):
            x = args[0]
            z = self._gate(key, module.training)
            return (x * z.to(device=x.device, dtype=x.dtype),) + tuple(args[1:])

        return hook

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered on a model."""
        return bool(self._handles)

    @typechecked
    def attach(self, model: nn.Module) -> "GateSet":
        """Gate ``model``'s heads and FFN units with forward pre-hooks.

        ``model`` must have the structures the gates were built for (same names and
        counts). Its forward draws one sample per gate (training) or uses the evaluation
        gates (``eval()``); see the module docstring.

        Raises:
            RuntimeError: If already attached.
            ValueError: If the model's structures differ.
        """
        if self._handles:
            raise RuntimeError("gates already attached; detach() first")
        if tuple(structures(model)) != self.structures:
            raise ValueError("the model's structures differ from the gates'")
        handles = [
            model.register_forward_pre_hook(self._draw),
            model.register_forward_hook(self._forget, always_call=True),
        ]
        for s in self.structures:
            module = model.get_submodule(s.name)
            if s.kind == "ffn":
                target, hook = module[2], self._unit_hook(s.key)
            else:
                target, hook = module.out, self._head_hook(s.key, s.unit_width)
            handles.append(target.register_forward_pre_hook(hook))
        self._handles = handles
        return self

    def detach(self) -> "GateSet":
        """Remove the hooks; the model is exactly dense again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._drawn = None
        return self

    def _hook_ids(self) -> List[int]:
        return [handle.id for handle in self._handles]


# --------------------------------------------------------------------- compiled model
class HeadlessAttention(nn.Module):
    """An attention whose heads were all pruned: outputs its ``out`` bias, or zeros.

    Called like ``whisper.model.MultiHeadAttention``; returns ``(output, None)``.

    Args:
        n_state: Output width.
        bias: Bias of the removed ``out`` projection (None: outputs zeros).
    """

    def __init__(self, n_state: int, bias: Optional[torch.Tensor]):
        super().__init__()
        self.n_state = n_state
        self.n_head = 0
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x, xa=None, mask=None, kv_cache=None):
        out = x.new_zeros(*x.shape[:-1], self.n_state)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out, None


class UnitlessFFN(nn.Module):
    """An FFN whose units were all pruned: outputs its ``mlp.2`` bias, or zeros.

    Args:
        n_state: Output width.
        bias: Bias of the removed second linear (None: outputs zeros).
    """

    def __init__(self, n_state: int, bias: Optional[torch.Tensor]):
        super().__init__()
        self.n_state = n_state
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x):
        out = x.new_zeros(*x.shape[:-1], self.n_state)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out


def _new_linear(old: nn.Linear, weight: torch.Tensor, bias: Optional[torch.Tensor]):
    new = type(old)(
        weight.shape[1],
        weight.shape[0],
        bias=bias is not None,
        device=weight.device,
        dtype=old.weight.dtype,
    )
    new.weight.data.copy_(weight)
    new.weight.requires_grad_(old.weight.requires_grad)
    if bias is not None:
        new.bias.data.copy_(bias)
        new.bias.requires_grad_(old.bias.requires_grad)
    return new


def _rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    bias = None if linear.bias is None else linear.bias[index]
    return _new_linear(linear, linear.weight[index], bias)


def _columns(linear: nn.Linear, index: torch.Tensor, scale: torch.Tensor) -> nn.Linear:
    w = linear.weight
    folded = (w[:, index].double() * scale.double().to(w.device)).to(w.dtype)
    return _new_linear(linear, folded, linear.bias)


@typechecked
def compile_pruned(model: nn.Module, gates: GateSet) -> nn.Module:
    """A physically smaller copy of ``model`` under ``gates``' evaluation gates.

    Heads and FFN units whose evaluation gate is 0 are removed (``query``/``key``/
    ``value`` rows, ``out`` columns, ``n_head``; ``mlp.0`` rows and bias, ``mlp.2``
    columns); the kept units' soft gate values are folded into the ``out`` / ``mlp.2``
    columns; empty modules become :class:`HeadlessAttention` / :class:`UnitlessFFN`
    (docs/methods.md §2). ``model`` is not changed; the gates' hooks are not copied.

    Args:
        model: The dense model the gates were built for (attached or not).
        gates: The task's gates.

    Returns:
        The compiled model: in ``eval()`` its outputs equal the gated model's, and it has
        ``gates.removed_params()`` parameters fewer than ``model``.
    """
    if tuple(structures(model)) != gates.structures:
        raise ValueError("the model's structures differ from the gates'")
    with torch.no_grad():
        # The hooks are bound to ``gates``: keep it shared, not copied, then drop them.
        pruned = copy.deepcopy(model, memo={id(gates): gates})
        ids = gates._hook_ids()
        for module in pruned.modules():
            for hooks in (
                module._forward_pre_hooks,
                module._forward_hooks,
                module._forward_hooks_always_called,
            ):
                for i in ids:
                    hooks.pop(i, None)
        return _compile(pruned, gates.structures, gates.eval_gates())


# --------------------------------------------------------------------- structured masks
def _unit_slices(s: Structure) -> Dict[str, Tuple[int, int]]:
    """Weight name (relative to the structure) → (axis, unit width) of its units."""
    if s.kind == "ffn":
        return {"0.weight": (0, 1), "2.weight": (1, 1)}
    w = s.unit_width
    return {"query.weight": (0, w), "key.weight": (0, w), "value.weight": (0, w)} | {
        "out.weight": (1, w)
    }


@typechecked
def structured_mask(
    model: nn.Module,
    kept: Mapping[str, torch.Tensor],
    shapes: Mapping[str, Tuple[int, ...]],
) -> Dict[str, torch.Tensor]:
    """Weight masks (1 = kept) that remove whole heads and FFN units.

    A dropped head loses its ``query``/``key``/``value`` rows and ``out`` columns, a
    dropped FFN unit its ``mlp.0`` row and ``mlp.2`` column (biases are not masked: a
    dropped unit's output column is zero, so its bias reaches nothing). Masked training
    under such a mask equals the model without those structures
    (:func:`compile_masked`).

    Args:
        model: The model (its :func:`structures`).
        kept: Structure name → bool vector over its units (1 = kept); structures
            not named keep every unit.
        shapes: The weight tensors to mask (a mask set's ``shapes``): every one gets a
            mask; those of no structure stay all ones.

    Returns:
        Weight name → bool mask of that shape.

    Raises:
        ValueError: An unknown structure or a vector of the wrong length.
    """
    found = {s.name: s for s in structures(model)}
    unknown = sorted(set(kept) - set(found))
    if unknown:
        raise ValueError(f"no such structure(s): {unknown[:3]}")
    masks = {n: torch.ones(shape, dtype=torch.bool) for n, shape in shapes.items()}
    for name, vector in kept.items():
        s = found[name]
        if tuple(vector.shape) != (s.count,):
            raise ValueError(f"{name}: {tuple(vector.shape)} gates for {s.count} units")
        for weight, (axis, width) in _unit_slices(s).items():
            full = f"{name}.{weight}"
            if full not in masks:
                continue
            keep = vector.bool().cpu().repeat_interleave(width)
            if axis == 0:
                masks[full] &= keep[:, None]
            else:
                masks[full] &= keep[None, :]
    return masks


@typechecked
def kept_units_of_mask(
    model: nn.Module, mask: Mapping[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """The units a structured weight mask keeps (the inverse of :func:`structured_mask`).

    Read from the ``out`` / ``mlp.2`` columns; every other weight of a unit present in
    ``mask`` must agree.

    Raises:
        ValueError: A mask that is not structured (a unit partly kept), or without the
            ``out`` / ``mlp.2`` weight of a structure.
    """
    kept = {}
    for s in structures(model):
        slices = _unit_slices(s)
        key = f"{s.name}.{'2.weight' if s.kind == 'ffn' else 'out.weight'}"
        if key not in mask:
            raise ValueError(f"{key}: not in the mask; its units cannot be read")
        whole_units = {}
        for weight, (axis, _) in slices.items():
            full = f"{s.name}.{weight}"
            if full not in mask:
                continue
            m = mask[full].bool().cpu()
            units = (m if axis == 0 else m.t()).reshape(s.count, -1)
            whole = units.all(dim=1)
            if bool((units.any(dim=1) & ~whole).any()):
                raise ValueError(f"{full}: not a structured mask (a unit partly kept)")
            whole_units[full] = whole
        kept[s.name] = whole_units[key]
        for full, whole in whole_units.items():
            if not torch.equal(whole, kept[s.name]):
                raise ValueError(f"{full}: keeps other units than {key}")
    return kept


@typechecked
def structure_overlap(model: nn.Module, masks: MaskSet) -> Dict[str, object]:
    """Pairwise IoU of the tasks' kept heads and FFN units (structured masks).

    Every head and every FFN unit counts as one element; per kind (``heads``: self-
    and cross-attention heads, ``ffn_units``) and over all units (``overall``).

    Args:
        model: The model the masks are for (its :func:`structures`).
        masks: Structured masks (:func:`structured_mask`) of every task.

    Returns:
        ``{"tasks": [...], "overall": [[...]], "heads": [[...]], "ffn_units": [[...]]}``,
        ratios in ``[0, 1]`` (1 where two tasks keep nothing of a kind), the form of
        :func:`~espnet_pruning.pruning.report.overlap_matrix` that the overlap figure
        draws.

    Raises:
        ValueError: A mask that is not structured.
    """
    found = structures(model)
    tasks = list(masks.tasks)
    kept = {t: kept_units_of_mask(model, masks.mask(t)) for t in tasks}

    def units(task: str, kinds: Tuple[str, ...]) -> torch.Tensor:
        parts = [kept[task][s.name] for s in found if s.kind in kinds]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)

    out: Dict[str, object] = {"tasks": tasks}
    for key, kinds in (
        ("overall", KINDS),
        ("heads", ("self_attn", "cross_attn")),
        ("ffn_units", ("ffn",)),
    ):
        vectors = [units(t, kinds) for t in tasks]
        matrix = []
        for a in vectors:
            row = []
            for b in vectors:
                union = int((a | b).sum())
                row.append(1.0 if union == 0 else int((a & b).sum()) / union)
            matrix.append(row)
        out[key] = matrix
    return out


@typechecked
def compile_masked(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` without the heads and FFN units a
    structured mask drops (:func:`structured_mask`); its outputs equal the masked
    model's, and it has as many parameters fewer as the mask prunes in those units'
    weights (plus the dropped rows' biases).

    Raises:
        ValueError: A mask that is not structured.
    """
    return compile_kept(model, kept_units_of_mask(model, mask))


@typechecked
def compile_kept(model: nn.Module, kept: Mapping[str, torch.Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` keeping only the units ``kept`` names.

    Args:
        model: The dense model.
        kept: Structure name → bool vector over its units (1 = kept); every structure
            of ``model`` must be named (the form of :func:`kept_units_of_mask`, and of
            a compiled model's structure file).

    Raises:
        ValueError: A missing or unknown structure, or a vector of the wrong length.
    """
    found = tuple(structures(model))
    names = {s.name for s in found}
    if set(kept) != names:
        raise ValueError(
            f"kept units name other structures than the model's: missing "
            f"{sorted(names - set(kept))[:3]}, unknown {sorted(set(kept) - names)[:3]}"
        )
    for s in found:
        if tuple(kept[s.name].shape) != (s.count,):
            raise ValueError(
                f"{s.name}: {tuple(kept[s.name].shape)} entries for {s.count} units"
            )
    with torch.no_grad():
        pruned = copy.deepcopy(model)
        return _compile(
            pruned, found, {n: k.bool().to(torch.float32) for n, k in kept.items()}
        )


def _compile(
    pruned: nn.Module,
    found: Tuple[Structure, ...],
    values: Mapping[str, torch.Tensor],
) -> nn.Module:
    """Remove, in ``pruned`` itself, every unit whose gate value is 0 and fold the
    others' values into the output projections."""
    for s in found:
        z = values[s.name].to(torch.float32)
        keep = torch.nonzero(z > 0).flatten()
        parent_name, _, attr = s.name.rpartition(".")
        parent = pruned.get_submodule(parent_name) if parent_name else pruned
        module = getattr(parent, attr)
        if s.kind == "ffn":
            fc1, fc2 = module[0], module[2]
            if keep.numel() == 0:
                setattr(parent, attr, UnitlessFFN(fc2.out_features, fc2.bias))
                continue
            index = keep.to(fc1.weight.device)
            module[0] = _rows(fc1, index)
            module[2] = _columns(fc2, index, z[keep])
            continue
        if keep.numel() == 0:
            setattr(
                parent,
                attr,
                HeadlessAttention(module.out.out_features, module.out.bias),
            )
            continue
        d_head = s.unit_width
        cols = (keep[:, None] * d_head + torch.arange(d_head)).flatten()
        index = cols.to(module.query.weight.device)
        module.query = _rows(module.query, index)
        module.key = _rows(module.key, index)
        module.value = _rows(module.value, index)
        module.out = _columns(module.out, index, z[keep].repeat_interleave(d_head))
        module.n_head = int(keep.numel())
    return pruned
