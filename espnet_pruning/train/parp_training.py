"""PARP inside an ESPnet training run: re-prune at epoch boundaries (docs/methods.md §4).

A run with ``--parp_conf`` trains *every* weight (no task masks) and, at the start of
every epoch, applies :class:`espnet_pruning.pruning.parp.Parp`'s step: before epoch 1
the initial magnitude mask of θ0 (MPI) zeroes the pruned weights; before epoch ``e > 1``
the weights are re-pruned (by magnitude over all of them) when ``e − 1`` ends a
re-prune interval. The interval is counted in **epochs** here (set the updates per epoch
with ESPnet's ``--num_iters_per_epoch``), because an ESPnet run resumes at epoch
boundaries: the re-prune before epoch ``e`` only reads the weights of checkpoint
``e − 1``, so a resumed run repeats it exactly, and no state beyond the checkpoint is
needed. The run's mask is the re-prune of its final weights
(:meth:`Parp.finish <espnet_pruning.pruning.parp.Parp.finish>`), taken by the driver
(:mod:`espnet_pruning.experiments.parp_masks`).

``parp_conf`` keys are :class:`~espnet_pruning.pruning.parp.ParpHparams`' fields plus
``pruning_scope`` (a :class:`~espnet_pruning.pruning.scope.PruningScope` dict: which
weights are pruned; default: the default scope).
"""

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.pruning.masks import Mask
from espnet_pruning.pruning.parp import Parp, ParpHparams
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names


class ParpConfError(InputError):
    """An invalid ``parp_conf``."""


@typechecked
def parse_parp_conf(conf: Mapping[str, Any]) -> Tuple[ParpHparams, PruningScope]:
    """The hyperparameters and the pruning scope of a ``parp_conf`` mapping.

    Raises:
        ParpConfError: Naming the bad key or value.
    """
    conf = dict(conf)
    try:
        scope = PruningScope.from_dict(conf.pop("pruning_scope", None))
        known = set(ParpHparams.__dataclass_fields__)
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        hparams = ParpHparams(**conf)
    except (TypeError, ValueError) as e:
        raise ParpConfError(f"parp_conf: {e}") from None
    return hparams, scope


@typechecked
def reprune_at_epoch_start(
    model: torch.nn.Module,
    conf: Mapping[str, Any],
    epoch: int,
    max_epoch: int,
) -> Optional[Mask]:
    """PARP's step before training epoch ``epoch`` (1-based) of ``max_epoch``.

    Args:
        model: The model being trained (unwrapped from DDP).
        conf: The run's ``parp_conf``.
        epoch: The epoch about to start.
        max_epoch: The run's last epoch (PARP-P's stages are equal shares of it).

    Returns:
        The new mask when the weights were pruned, else None.
    """
    hparams, scope = parse_parp_conf(conf)
    parp = Parp(hparams, total_updates=max_epoch)
    params = dict(model.named_parameters())
    weights: Dict[str, torch.Tensor] = {
        n: params[n] for n in prunable_parameter_names(model, scope)
    }
    done = epoch - 1
    mask = parp.start(weights) if done == 0 else parp.after_update(done, weights)
    if mask is not None:
        zeros = sum(int((~m).sum()) for m in mask.values())
        total = sum(m.numel() for m in mask.values())
        logging.info(
            f"PARP before epoch {epoch}: {zeros} of {total} weights pruned "
            f"({100 * zeros / total:.2f} %), all weights train"
        )
    return mask
