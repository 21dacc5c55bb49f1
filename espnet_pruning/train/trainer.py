"""ESPnet's Trainer, plus frozen weights kept exact in the n-best averaged models.

With ``--update_outside_mask freeze`` the optimizer steps never move a weight outside
the trained tasks' masks, but ESPnet's ``average_nbest_models`` sums and divides the
saved checkpoints, which changes identical fp32 values by an ulp (pruning-pitfalls.md
section 6). After training, every ``*.ave*.pth`` the Trainer wrote is repaired with
:func:`~espnet_pruning.pruning.apply.restore_frozen`: frozen entries take their values
from the trained model in memory, whose frozen entries are the starting values bit for
bit (that is what the restriction guarantees, across resumes too).
"""

import logging
import os
import tempfile
from pathlib import Path

import torch
from espnet2.train.trainer import Trainer

from espnet_pruning.pruning.apply import restore_frozen


class USLUTrainer(Trainer):
    """ESPnet's Trainer; averaged checkpoints keep frozen weights exact."""

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
        """``Trainer.run``, then the repair of the averaged checkpoints (rank 0)."""
        super().run(
            model=model,
            optimizers=optimizers,
            schedulers=schedulers,
            train_iter_factory=train_iter_factory,
            valid_iter_factory=valid_iter_factory,
            plot_attention_iter_factory=plot_attention_iter_factory,
            trainer_options=trainer_options,
            distributed_option=distributed_option,
        )
        scope = getattr(model, "frozen_scope", None)
        if scope is None:
            return
        if distributed_option.distributed and distributed_option.dist_rank != 0:
            return
        repair_averaged(model, Path(trainer_options.output_dir))


def repair_averaged(model: torch.nn.Module, output_dir: Path) -> int:
    """Restore the frozen entries of every averaged checkpoint in ``output_dir``.

    Args:
        model: The trained model, with ``frozen_scope`` = (trainable mask, others).
        output_dir: The experiment directory.

    Returns:
        The number of files rewritten.
    """
    trainable, others = model.frozen_scope
    reference = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    n = 0
    for path in sorted(output_dir.glob("*.ave*.pth")):
        if path.is_symlink() or not path.is_file():
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        fixed = restore_frozen(state, reference, trainable, others)
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
