"""Dynamic ASR Pathways inside an ESPnet training run (docs/methods.md §3).

A run with ``--pathways_conf`` (and ``--mask_dir``, the starting masks ``m_z``) trains
the shared weights as Algorithm 2 does, except that a batch of task ``z`` uses and
trains its *training mask* ``m_{z,r} = m_z ∪ (1 − ⋃_{l≠z} m_l)`` (Eq. 1), and that the
masks change during the run: after every optimizer step :class:`PathwaysSchedule`
advances :class:`~espnet_pruning.pruning.pathways.DynamicPathways` (adaptation every
``adapt_interval`` steps, pruning every ``prune_interval`` steps), and
:class:`~espnet_pruning.train.masked_training.MaskedTraining` installs the new training
masks before the next batch. Intervals count optimizer steps.

ESPnet resumes at epoch boundaries, so the schedule's state (every ``m_z``, bit-packed,
and the step counters) is written at the end of every training epoch into the
checkpoint stage as ``pathways.<epoch>.state`` and committed with that epoch's
checkpoint; a resumed run reads the state of the checkpoint's epoch and continues bit
for bit. The run's masks are the last epoch's ``m_z``
(:func:`read_state`), taken by the driver
(:mod:`espnet_pruning.experiments.pathways_masks`).

``pathways_conf`` keys are :class:`~espnet_pruning.pruning.pathways.DynamicPathwaysHparams`'
fields.
"""

import logging
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_open
from espnet_pruning.pruning.masks import Mask, MaskSet
from espnet_pruning.pruning.pathways import DynamicPathways, DynamicPathwaysHparams
from espnet_pruning.train.checkpoints import CheckpointError, check_torch_file

STATE_FILE = "pathways.{epoch}.state"
_STATE_NAME = re.compile(r"pathways\.([0-9]+)\.state")


class PathwaysConfError(InputError):
    """An invalid ``pathways_conf``."""


@typechecked
def parse_pathways_conf(conf: Mapping[str, Any]) -> DynamicPathwaysHparams:
    """The hyperparameters of a ``pathways_conf`` mapping.

    Raises:
        PathwaysConfError: Naming the bad key or value.
    """
    known = set(DynamicPathwaysHparams.__dataclass_fields__)
    unknown = sorted(set(conf) - known)
    try:
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(known)}")
        return DynamicPathwaysHparams(**conf)
    except (TypeError, ValueError) as e:
        raise PathwaysConfError(f"pathways_conf: {e}") from None


class PathwaysSchedule:
    """The :class:`~espnet_pruning.train.masked_training.MaskSchedule` of a Dynamic ASR
    Pathways run.

    Args:
        masks: The starting masks ``m_z`` (every task of the run).
        hparams: The run's hyperparameters.
    """

    @typechecked
    def __init__(self, masks: MaskSet, hparams: DynamicPathwaysHparams):
        self.pathways = DynamicPathways(
            {t: masks.mask(t) for t in masks.tasks}, hparams
        )
        self._shapes = masks.shapes
        self._n_model_params = masks.n_model_params
        self._scope = masks.scope

    @property
    def last_step(self) -> int:
        """Optimizer steps done."""
        return self.pathways.last_step

    def due(self, step: int) -> bool:
        """Whether ``step`` may change a mask."""
        return self.pathways.due(step)

    def training_masks(self) -> Dict[str, Mask]:
        """Task → its ``m_{z,r}`` (what its batches use and train)."""
        return {t: self.pathways.training_mask(t) for t in self.pathways.tasks}

    def training_mask_set(self) -> MaskSet:
        """:meth:`training_masks` as a mask set (the start of masked training)."""
        return MaskSet(
            self._shapes, self.training_masks(), self._n_model_params, self._scope
        )

    def masks(self) -> MaskSet:
        """Every task's own mask ``m_z``."""
        return self.pathways.mask_set(self._n_model_params, self._scope)

    def after_step(
        self, step: int, task: str, weights: Mapping[str, torch.Tensor]
    ) -> Optional[Dict[str, Mask]]:
        """Advance the schedule; the new training masks of every task when a mask
        changed (a change of one ``m_z`` changes the others' residuals)."""
        changes = self.pathways.after_step(step, task, weights)
        if not changes:
            return None
        density = ", ".join(f"{t} {100 * d:.2f} %" for t, d in changes.density.items())
        logging.info(
            f"Dynamic Pathways step {step}: "
            + (f"adapted {changes.adapted}; " if changes.adapted else "")
            + ("pruned; " if changes.pruned else "")
            + f"flipped {changes.flipped}; kept: {density}; "
            f"union/total {changes.union_ratio:.4f}"
        )
        return self.training_masks()

    # ----------------------------------------------------------------- state files
    @typechecked
    def save(self, directory: Path, epoch: int) -> Path:
        """Write the state after ``epoch`` to ``directory`` (atomically).

        Masks are bit-packed (1 bit per weight per task), tensors in name order.
        """
        state = self.pathways.state_dict()
        packed = {
            t: torch.from_numpy(
                np.packbits(
                    torch.cat([m.reshape(-1) for m in mask.values()]).numpy(),
                    bitorder="little",
                )
            )
            for t, mask in state.pop("masks").items()
        }
        state.update(
            epoch=epoch,
            shapes={n: list(s) for n, s in self._shapes.items()},
            packed_masks=packed,
        )
        path = directory / STATE_FILE.format(epoch=epoch)
        with atomic_open(path, binary=True) as f:
            torch.save(state, f)
        return path

    @typechecked
    def load(self, directory: Path, epoch: int) -> None:
        """Continue from the state saved after ``epoch`` in ``directory``.

        Raises:
            CheckpointError: The file is missing, damaged or of another run.
        """
        path = directory / STATE_FILE.format(epoch=epoch)
        state = read_state(path)
        if state["shapes"] != self._shapes or state["epoch"] != epoch:
            raise CheckpointError(
                f"{path}: the state of another run (epoch {state['epoch']}, other "
                "tensors); delete the run's directory to train again"
            )
        try:
            self.pathways.load_state_dict(state)
        except (ValueError, KeyError) as e:  # MaskError is a ValueError
            raise CheckpointError(f"{path}: {e}") from None


@typechecked
def read_state(path: Path) -> Dict[str, Any]:
    """A state file of :meth:`PathwaysSchedule.save`, masks unpacked to bool tensors.

    Raises:
        CheckpointError: The file is missing, damaged or not such a state.
    """
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (the Dynamic Pathways state of the checkpoint's epoch); "
            "delete the run's directory to train again"
        )
    check_torch_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    keys = {"epoch", "shapes", "packed_masks", "last_step", "n_adaptations"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise CheckpointError(f"{path}: not a Dynamic Pathways state")
    shapes = {n: tuple(s) for n, s in state["shapes"].items()}
    sizes = [int(np.prod(s)) for s in shapes.values()]
    masks = {}
    for task, bits in state.pop("packed_masks").items():
        flat = np.unpackbits(bits.numpy(), count=sum(sizes), bitorder="little")
        pieces = torch.from_numpy(flat.astype(bool)).split(sizes)
        masks[task] = {n: p.reshape(s) for (n, s), p in zip(shapes.items(), pieces)}
    state.update(shapes=shapes, masks=masks)
    return state


@typechecked
def state_epochs(directory: Path) -> Dict[int, Path]:
    """Epoch → state file of the run in ``directory``."""
    found = {}
    for p in directory.glob("pathways.*.state"):
        m = _STATE_NAME.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


@typechecked
def drop_old_states(directory: Path, epoch: int) -> None:
    """Delete state files of epochs before ``epoch − 1``: a resume reads the state of
    the committed checkpoint's epoch, which is ``epoch − 1`` or later."""
    for e, p in state_epochs(directory).items():
        if e < epoch - 1:
            p.unlink()
