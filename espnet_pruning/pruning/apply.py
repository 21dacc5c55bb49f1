"""Applying per-task masks to shared weights, out of place, and restricting updates.

Shared weights are never zeroed in place: zeroing task A's pruned entries would destroy
values that task B's mask still uses (docs/pruning_pitfalls.md §1). Instead

* :func:`call_with_masks` runs the model with effective weights ``m ⊙ W`` substituted
  for the named parameters (``torch.func.functional_call``). Autograd then gives the
  real parameters the gradient ``m ⊙ dL/dW_eff``, parameter names and ``state_dict``
  keys stay unchanged, nothing is attached to the model (``deepcopy``/pickle work), and
  a tied embedding/output layer sees the masked weight in both uses.
* :class:`UpdateRestriction` keeps every entry outside a *trainable* mask bit-identical
  across optimizer steps. Masked gradients alone do not: Adam/SGD momentum and
  (decoupled) weight decay move entries whose gradient is zero (§2). The
  restriction snapshots the frozen entries in an optimizer step pre-hook and writes
  them back in a step post-hook (§2.1, pattern 1), whatever the optimizer does.
* :func:`restore_frozen` repairs a state dict after ESPnet's checkpoint averaging, which
  changes identical fp32 values by an ulp.
"""

from typing import Dict, Mapping, Optional, Sequence

import torch
from torch import nn
from torch.optim import Optimizer
from typeguard import typechecked

from espnet_pruning.pruning.masks import Mask, MaskError, _as_bool_mask

# What happens to entries a trainable mask does not name (see ``unmasked_update``).
UPDATE_POLICIES = ("allow", "freeze")


def _checked_mask(
    params: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], what: str
) -> Mask:
    """Bool masks after checking names and shapes against ``params`` (nothing changed)."""
    unknown = sorted(n for n in mask if n not in params)
    if unknown:
        raise MaskError(f"{what}: masks for unknown parameters {unknown[:10]}")
    return {
        n: _as_bool_mask(n, m, tuple(params[n].shape), f"{what}: ")
        for n, m in mask.items()
    }


class CastMasks(dict):
    """Masks already validated and cast to each parameter's dtype and device.

    Made by :func:`cast_masks`; :func:`masked_parameters` uses them without any
    per-call conversion or value check (cache one per task and device).
    """


@typechecked
def cast_masks(module: nn.Module, mask: Mapping[str, torch.Tensor]) -> CastMasks:
    """Validate ``mask`` once and cast it to each parameter's dtype and device.

    Args:
        module: The model the masks are for.
        mask: Parameter name → bool (or 0/1) mask.

    Returns:
        Parameter name → mask in the parameter's dtype (values exactly 0 and 1).

    Raises:
        MaskError: For an unknown parameter name, a wrong shape or a non-binary mask.
    """
    params = dict(module.named_parameters())
    checked = _checked_mask(params, mask, "cast_masks")
    return CastMasks(
        {
            n: m.to(device=params[n].device, dtype=params[n].dtype)
            for n, m in checked.items()
        }
    )


@typechecked
def masked_parameters(
    module: nn.Module, mask: Mapping[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """Effective weights ``m ⊙ W`` for the masked parameters of ``module``.

    The real parameters are not modified; the results are non-leaf tensors whose
    gradient flows back into the parameters as ``m ⊙ dL/dW_eff`` (exactly zero outside
    ``m`` for finite gradients). A pruned entry of the effective weight is ``±0``
    (``NaN`` only if the stored weight is ``inf``/``NaN``).

    Args:
        module: The model.
        mask: Parameter name → mask: bool (or 0/1) tensors, validated on every call, or
            the :class:`CastMasks` of :func:`cast_masks` (the fast path: a multiply).

    Returns:
        Parameter name → effective weight, for the names in ``mask`` only.

    Raises:
        MaskError: For an unknown parameter name, a wrong shape or a non-binary mask.
    """
    params = dict(module.named_parameters())
    if not isinstance(mask, CastMasks):
        mask = _checked_mask(params, mask, "masked_parameters")
    else:
        unknown = sorted(n for n in mask if n not in params)
        if unknown:
            raise MaskError(f"masked_parameters: unknown parameters {unknown[:10]}")
    # A multiply, not torch.where: where with a bool condition is several times
    # slower on CPU, and the multiply's backward is the masked gradient itself.
    return {name: params[name] * m.to(params[name].device) for name, m in mask.items()}


@typechecked
def call_with_masks(
    module: nn.Module, mask: Mapping[str, torch.Tensor], *args, **kwargs
):
    """Call ``module(*args, **kwargs)`` with the masked parameters ``m ⊙ W``.

    Args:
        module: The model (e.g. ``whisper.model.Whisper`` or an ESPnet model).
        mask: Parameter name → mask; unmasked parameters are used as they are.
        *args: Positional arguments of ``module.forward``.
        **kwargs: Keyword arguments of ``module.forward``.

    Returns:
        Whatever ``module`` returns.

    Raises:
        MaskError: If the mask does not fit the module.

    Examples:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[2.0, 3.0]]))
        >>> call_with_masks(lin, {"weight": torch.tensor([[True, False]])},
        ...                 torch.ones(1, 2)).item()
        2.0
    """
    return torch.func.functional_call(
        module,
        masked_parameters(module, mask),
        args,
        kwargs,
        strict=False,
        tie_weights=True,
    )


class UpdateRestriction:
    """Keep parameter entries outside a trainable mask unchanged by optimizer steps.

    Before each ``optimizer.step()`` the frozen entries are gathered (only those, so the
    snapshot is proportional to the frozen part); after it they are scattered back, so
    momentum, Adam moments, coupled or decoupled weight decay, clipping, schedulers and
    gradient accumulation cannot move them. Steps skipped by ``GradScaler`` call no hook
    and move nothing. The hooks live on the optimizer objects (not in their state), so
    they survive ``optimizer.load_state_dict`` and add nothing to checkpoints.

    Call :meth:`mask_gradients` between ``backward()`` and gradient clipping if the
    clipping norm should count only trainable entries.

    Args:
        named_parameters: Parameter name → parameter (e.g.
            ``dict(model.named_parameters())``).
        optimizers: Optimizers whose steps are restricted.
        unmasked_update: What happens to parameters not named in the trainable mask (biases,
            LayerNorm, positional embedding, ...): ``allow`` updates them, ``freeze``
            keeps them unchanged.

    Raises:
        ValueError: For an unknown ``unmasked_update``.

    Examples:
        >>> lin = nn.Linear(2, 2)
        >>> opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.1)
        >>> with UpdateRestriction(dict(lin.named_parameters()), [opt], "freeze") as r:
        ...     r.set_trainable({"weight": torch.tensor([[True, False], [False, True]])})
        ...     before = lin.weight.detach().clone()
        ...     lin(torch.ones(3, 2)).sum().backward()
        ...     opt.step()
        >>> bool(lin.weight[0, 1] == before[0, 1]), bool(lin.weight[0, 0] != before[0, 0])
        (True, True)
    """

    @typechecked
    def __init__(
        self,
        named_parameters: Mapping[str, nn.Parameter],
        optimizers: Sequence[Optimizer],
        unmasked_update: str = "allow",
    ):
        if unmasked_update not in UPDATE_POLICIES:
            raise ValueError(
                f"unmasked_update must be one of {UPDATE_POLICIES}, "
                f"got {unmasked_update!r}"
            )
        self.unmasked_update = unmasked_update
        self._params: Dict[str, nn.Parameter] = dict(named_parameters)
        self._names = {id(p): n for n, p in self._params.items()}
        # name -> flat indices of the frozen entries (on the parameter's device), or
        # None when the whole tensor is frozen.
        self._frozen: Optional[Dict[str, Optional[torch.Tensor]]] = None
        self._snapshots: Dict[int, Dict[str, torch.Tensor]] = {}
        self._buffers: Dict[str, torch.Tensor] = {}
        self._handles = []
        for opt in optimizers:
            self._handles.append(opt.register_step_pre_hook(self._before_step))
            self._handles.append(opt.register_step_post_hook(self._after_step))

    @property
    def active(self) -> bool:
        """Whether a restriction is in force."""
        return self._frozen is not None

    @typechecked
    def set_trainable(self, mask: Optional[Mapping[str, torch.Tensor]]) -> None:
        """Set the trainable entries (mask 1) of the named parameters.

        The frozen entries are kept as flat indices, so that each step gathers and
        scatters only them, without a device synchronisation: int64 for parameters in
        CPU memory (converting per step costs more than the gather itself there), int32
        on accelerators (half the memory; the conversion is cheap) unless the tensor has
        2**31 or more elements.

        Args:
            mask: Parameter name → trainable mask; parameters not named follow
                ``unmasked_update``. ``None`` lifts the restriction (everything trainable).

        Raises:
            MaskError: For an unknown name, a wrong shape or a non-binary mask; the
                previous restriction then stays in force.
            ValueError: For a non-contiguous parameter with frozen entries.
        """
        if mask is None:
            self._frozen = None
            self._buffers = {}
            return
        checked = _checked_mask(self._params, mask, "UpdateRestriction")
        frozen: Dict[str, Optional[torch.Tensor]] = {}
        for name, p in self._params.items():
            if name in checked:
                idx = (~checked[name].to(p.device)).reshape(-1).nonzero().squeeze(1)
                if idx.numel() == 0:
                    continue
                if p.device.type != "cpu" and p.numel() < 2**31:
                    idx = idx.to(torch.int32)
                frozen[name] = idx
            elif self.unmasked_update == "freeze":
                frozen[name] = None
            else:
                continue
            if not p.is_contiguous():
                raise ValueError(f"parameter {name} is not contiguous")
        self._frozen = frozen
        # Snapshot buffers, reused every step (no allocation per step).
        self._buffers = {
            name: torch.empty(
                idx.numel() if idx is not None else self._params[name].shape,
                dtype=self._params[name].dtype,
                device=self._params[name].device,
            )
            for name, idx in frozen.items()
        }

    def mask_gradients(self) -> None:
        """Zero the gradient of every frozen entry (e.g. before gradient clipping)."""
        for name, idx in (self._frozen or {}).items():
            g = self._params[name].grad
            if g is None:
                continue
            if idx is None:
                g.zero_()
            else:
                g.view(-1).index_fill_(0, idx.long(), 0)

    def _before_step(self, optimizer: Optimizer, args, kwargs) -> None:
        if self._frozen is None:
            return
        snaps = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                name = self._names.get(id(p))
                if name is None or name not in self._frozen:
                    continue
                idx, buf = self._frozen[name], self._buffers[name]
                w = p.detach()
                if idx is None:
                    snaps[name] = buf.copy_(w)
                else:
                    snaps[name] = torch.index_select(w.view(-1), 0, idx, out=buf)
        self._snapshots[id(optimizer)] = snaps

    def _after_step(self, optimizer: Optimizer, args, kwargs) -> None:
        snaps = self._snapshots.pop(id(optimizer), None)
        if not snaps or self._frozen is None:
            return
        with torch.no_grad():
            for name, snap in snaps.items():
                w = self._params[name].detach()
                idx = self._frozen[name]
                if idx is None:
                    w.copy_(snap)
                else:
                    w.view(-1).index_copy_(0, idx.long(), snap)  # no copy if int64

    def remove(self) -> None:
        """Remove the hooks from the optimizers; the restriction ends."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._frozen = None
        self._snapshots = {}
        self._buffers = {}

    def __enter__(self) -> "UpdateRestriction":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@typechecked
def restore_frozen(
    target_state: Dict[str, torch.Tensor],
    reference_state: Mapping[str, torch.Tensor],
    trainable: Mapping[str, torch.Tensor],
    unmasked_update: str = "freeze",
) -> Dict[str, torch.Tensor]:
    """Write reference values into every frozen entry of a state dict.

    Use after ESPnet's ``average_nbest_models``: averaging identical fp32 values
    changes some by an ulp, so entries that training kept frozen would drift.

    Args:
        target_state: State dict to repair (e.g. an averaged checkpoint); not modified.
        reference_state: State dict holding the frozen values (e.g. the checkpoint the
            restricted training started from).
        trainable: Parameter name → trainable mask (1 = take the target's value).
        unmasked_update: For entries not named in ``trainable``: ``freeze`` takes the
            reference value, ``allow`` keeps the target's.

    Returns:
        A new state dict: target values where trainable, reference values elsewhere.

    Raises:
        ValueError: For an unknown ``unmasked_update`` or a key missing in the reference.
        MaskError: For a mask name missing in the target, or a wrong shape.
    """
    if unmasked_update not in UPDATE_POLICIES:
        raise ValueError(
            f"unmasked_update must be one of {UPDATE_POLICIES}, got {unmasked_update!r}"
        )
    checked = _checked_mask(target_state, trainable, "restore_frozen")
    needed = list(checked) + (
        [k for k in target_state if k not in checked]
        if unmasked_update == "freeze"
        else []
    )
    missing = [k for k in needed if k not in reference_state]
    if missing:
        raise ValueError(f"reference state has no entries {missing[:10]}")
    out = dict(target_state)
    for k in needed:
        t, ref = target_state[k], reference_state[k]
        if tuple(ref.shape) != tuple(t.shape):
            raise ValueError(
                f"{k}: reference shape {tuple(ref.shape)} != {tuple(t.shape)}"
            )
        ref = ref.to(device=t.device, dtype=t.dtype)
        if k in checked:
            out[k] = torch.where(checked[k].to(t.device), t, ref)
        else:
            out[k] = ref.clone()
    return out
