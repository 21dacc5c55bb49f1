"""ESPnet's Trainer with atomic checkpoints and frozen weights kept exact in averages.

Every checkpoint ESPnet writes (``checkpoint.pth``, ``{N}epoch.pth``, averaged models,
``latest``/best links) goes into a stage directory first and is published whole by a
rename (:mod:`espnet_pruning.train.checkpoints`): a kill at any instant leaves the last
complete epoch, from which ``--resume true`` continues.

With ``--update_outside_mask freeze`` the optimizer steps never move a weight outside
the trained tasks' masks, but ESPnet's ``average_nbest_models`` sums and divides the
saved checkpoints, which changes identical fp32 values by an ulp
(docs/pruning_pitfalls.md §6). After training, every ``*.ave*.pth`` the Trainer wrote
is repaired with
:func:`~espnet_pruning.pruning.apply.restore_frozen`: frozen entries take their values
from the trained model in memory, whose frozen entries are the starting values bit for
bit (that is what the restriction guarantees, across resumes too). An S3-Router
run (``--s3_router_conf``) keeps every weight frozen and trains only the scores, so its
averages are repaired the same way: averaged scores, θ exact
(:meth:`~espnet_pruning.train.s3_router_training.TaskScoreRouter.frozen_scope`).
"""

import argparse
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional

import torch
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_pruning.pruning.apply import restore_frozen
from espnet_pruning.train.checkpoints import (
    STAGE,
    CheckpointError,
    commit,
    prepare_stage,
    release_stage,
    restart_hint,
)
from espnet_pruning.train.parp_training import parse_parp_conf, reprune_at_epoch_start
from espnet_pruning.train.pathways_training import PathwaysSchedule, drop_old_states


@dataclasses.dataclass
class USLUTrainerOptions(TrainerOptions):
    """ESPnet's trainer options and ours.

    Args:
        parp_conf: PARP's re-pruning schedule (:mod:`espnet_pruning.train.parp_training`);
            None for ordinary training.
    """

    parp_conf: Optional[dict]


class USLUTrainer(Trainer):
    """ESPnet's Trainer; checkpoints are atomic, averages keep frozen weights exact.

    With ``--parp_conf``, PARP re-prunes the weights at epoch starts.
    """

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> USLUTrainerOptions:
        """ESPnet's options plus ``parp_conf`` (checked here, before training starts)."""
        if getattr(args, "parp_conf", None):
            parse_parp_conf(args.parp_conf)
        else:
            args.parp_conf = None
        return build_dataclass(USLUTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """``--parp_conf``."""
        group = parser.add_argument_group("PARP (mask finding with re-pruning)")
        group.add_argument(
            "--parp_conf",
            action=NestedDictAction,
            default=dict(),
            help="train every weight and re-prune by magnitude at epoch starts "
            "(keys: target_sparsity, reprune_interval in epochs, scope, rounding, "
            "schedule, pruning_scope); empty: ordinary training",
        )

    @classmethod
    def run(
        cls,
        model,
        optimizers,
        schedulers,
        train_iter_factory,
        valid_iter_factory,
        plot_attention_iter_factory,
        trainer_options,
        distributed_option,
    ) -> None:
        """``Trainer.run`` into the stage, then repair of the averages and the commit.

        Rank 0 rebuilds the stage from the committed files (the other ranks wait), so
        every rank resumes from the last complete ``checkpoint.pth``.
        """
        output_dir = Path(trainer_options.output_dir)
        rank0 = not distributed_option.distributed or distributed_option.dist_rank == 0
        if rank0:
            log_dirs = ["images"] if trainer_options.use_matplotlib else []
            if trainer_options.use_tensorboard:
                log_dirs.append("tensorboard")
            if plot_attention_iter_factory is not None:
                log_dirs.append("att_ws")
            stage = prepare_stage(output_dir, log_dirs)
        else:
            stage = output_dir / STAGE
        if distributed_option.distributed:
            torch.distributed.barrier()
        super().run(
            model=model,
            optimizers=optimizers,
            schedulers=schedulers,
            train_iter_factory=train_iter_factory,
            valid_iter_factory=valid_iter_factory,
            plot_attention_iter_factory=plot_attention_iter_factory,
            trainer_options=dataclasses.replace(trainer_options, output_dir=stage),
            distributed_option=distributed_option,
        )
        if not rank0:
            return
        scope = None
        if model.masked_training is not None:
            scope = model.masked_training.frozen_scope()
        elif getattr(model, "score_router", None) is not None:
            scope = model.score_router.frozen_scope()
        if scope is not None:
            repair_averaged(model, stage, *scope)
        commit(stage)
        shutil.rmtree(stage)

    @classmethod
    def train_one_epoch(cls, *args, **kwargs) -> bool:
        """Commit the previous epoch's files (rank 0), then ESPnet's epoch.

        ESPnet writes nothing between the end of an epoch's checkpoint writes and the
        start of the next epoch's training, so the stage holds complete files here.
        """
        dist = kwargs["distributed_option"]
        if not dist.distributed or dist.dist_rank == 0:
            stage = Path(kwargs["options"].output_dir)
            commit(stage)
            release_stage(stage, kwargs["reporter"].get_epoch())
        options = kwargs["options"]
        model = kwargs["model"]
        model = getattr(model, "module", model)
        epoch = kwargs["reporter"].get_epoch()
        if getattr(options, "parp_conf", None):
            reprune_at_epoch_start(model, options.parp_conf, epoch, options.max_epoch)
        result = super().train_one_epoch(*args, **kwargs)
        schedule = _pathways_schedule(model)
        if schedule is not None and (not dist.distributed or dist.dist_rank == 0):
            # Committed with this epoch's checkpoint, which ESPnet writes next.
            stage = Path(options.output_dir)
            schedule.save(stage, epoch)
            drop_old_states(stage.parent, epoch)
        return result

    @staticmethod
    def resume(checkpoint, *args, **kwargs) -> None:
        """ESPnet's resume; a checkpoint that cannot be read is one named error.

        A Dynamic Pathways run also continues its mask schedule from the state of
        the checkpoint's epoch.
        """
        path = Path(checkpoint)
        output_dir = path.parent.parent if path.parent.name == STAGE else path.parent
        try:
            Trainer.resume(checkpoint, *args, **kwargs)
        except (RuntimeError, EOFError, OSError, KeyError, ValueError) as e:
            raise CheckpointError(
                f"{output_dir / path.name}: cannot resume from it "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                + restart_hint(output_dir)
            ) from e
        model = kwargs["model"]
        schedule = _pathways_schedule(getattr(model, "module", model))
        if schedule is not None:
            epoch = kwargs["reporter"].get_epoch()
            schedule.load(output_dir, epoch)
            model = getattr(model, "module", model)
            model.masked_training.replace_masks(schedule.training_masks())
            logging.info(
                f"Dynamic Pathways: resumed at step {schedule.last_step} (epoch {epoch})"
            )


def _pathways_schedule(model: torch.nn.Module) -> Optional[PathwaysSchedule]:
    training = getattr(model, "masked_training", None)
    schedule = training.schedule if training is not None else None
    return schedule if isinstance(schedule, PathwaysSchedule) else None


def repair_averaged(
    model: torch.nn.Module,
    output_dir: Path,
    trainable: Dict[str, torch.Tensor],
    unmasked_update: str,
) -> int:
    """Restore the frozen entries of every averaged checkpoint in ``output_dir``.

    Args:
        model: The trained model (its frozen entries hold the starting values).
        output_dir: The experiment directory.
        trainable: Parameter name → mask of the entries training could change.
        unmasked_update: Whether parameters ``trainable`` does not name were trained.

    Returns:
        The number of files rewritten.
    """
    reference = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    n = 0
    for path in sorted(output_dir.glob("*.ave*.pth")):
        if path.is_symlink() or not path.is_file():
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        fixed = restore_frozen(state, reference, trainable, unmasked_update)
        changed = sum(int((fixed[k] != state[k]).sum()) for k in state)
        if changed == 0:
            continue
        # Atomic replace: a kill leaves the old file or the new one, never half of it.
        fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=f".{path.name}.")
        os.close(fd)
        torch.save(fixed, tmp)
        os.replace(tmp, path)
        logging.info(f"{path}: {changed} frozen entries restored after averaging")
        n += 1
    return n
