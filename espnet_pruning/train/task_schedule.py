"""Per-task batch schedule: N consecutive batches of one task, then the next task.

Algorithms 1 and 2 of the paper train "N iterations on task t, then switch". This sampler
turns task-homogeneous batches (ESPnet's folded sampler with ``utt2category``) into such a
schedule: one *round* visits every task once in a random order and takes ``block_size``
batches of each; a task with fewer batches cycles through its (reshuffled) batches.

The schedule is a pure function of the seed ESPnet passes per epoch, so it is identical on
every DDP rank (each rank then takes its shard ``batch[rank::world_size]`` of the same
batch, hence the same task in every step) and reproducible when a run resumes.
"""

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from espnet2.samplers.abs_sampler import AbsSampler
from typeguard import typechecked

from espnet_pruning.errors import InputError


class TaskScheduleError(InputError):
    """The batches cannot be scheduled per task."""


class TaskBlockSampler(AbsSampler):
    """Blocks of ``block_size`` consecutive batches per task, task order shuffled per round.

    Args:
        batches_by_task: Task-homogeneous batches (tuples of utterance ids) per task.
        block_size: Batches per task and round (the paper's N1 or N2); 0 takes all of
            the task's batches once (a task's epoch: Algorithm 1's N1 counted in epochs).
        rounds: Rounds per generated sequence (one ESPnet "epoch" unless
            ``num_iters_per_epoch`` cuts it differently).
        rank: This process's DDP rank.
        world_size: Number of DDP processes; every batch is sharded ``[rank::world_size]``.
    """

    @typechecked
    def __init__(
        self,
        batches_by_task: Dict[str, Sequence[Tuple[str, ...]]],
        block_size: int,
        rounds: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ):
        if block_size < 0 or rounds < 1:
            raise TaskScheduleError("block_size must be >= 0 and rounds >= 1")
        empty = [t for t, b in batches_by_task.items() if not b]
        if not batches_by_task or empty:
            raise TaskScheduleError(f"no batches for task(s) {empty or 'any'}")
        for task, batches in batches_by_task.items():
            small = [b for b in batches if len(b) < world_size]
            if small:
                raise TaskScheduleError(
                    f"task {task}: a batch of {len(small[0])} cannot be split over "
                    f"{world_size} processes"
                )
        self.tasks = sorted(batches_by_task)
        self.batches_by_task = {t: list(batches_by_task[t]) for t in self.tasks}
        self.block_size = block_size
        self.rounds = rounds
        self.rank = rank
        self.world_size = world_size

    def block_length(self, task: str) -> int:
        """Batches of ``task`` per round."""
        return self.block_size or len(self.batches_by_task[task])

    def __len__(self) -> int:
        return self.rounds * sum(self.block_length(t) for t in self.tasks)

    def __iter__(self) -> Iterator[Tuple[str, ...]]:
        return iter(self.generate(0))

    def schedule(self, seed: int) -> List[Tuple[str, List[Tuple[str, ...]]]]:
        """``(task, batches)`` blocks of one generated sequence (unsharded)."""
        rng = np.random.RandomState(seed)
        queues: Dict[str, List[Tuple[str, ...]]] = {t: [] for t in self.tasks}
        blocks = []
        for _ in range(self.rounds):
            for i in rng.permutation(len(self.tasks)):
                task = self.tasks[i]
                block = []
                while len(block) < self.block_length(task):
                    if not queues[task]:
                        pool = self.batches_by_task[task]
                        queues[task] = [pool[j] for j in rng.permutation(len(pool))]
                    block.append(queues[task].pop(0))
                blocks.append((task, block))
        return blocks

    def generate(self, seed: int) -> List[Tuple[str, ...]]:
        """The batches of one sequence, each sharded for this rank."""
        return [
            tuple(batch[self.rank :: self.world_size])
            for _, block in self.schedule(seed)
            for batch in block
        ]


@typechecked
def group_batches_by_task(
    batches: Sequence[Tuple[str, ...]],
    task_of: Dict[str, str],
    tasks: Optional[Sequence[str]] = None,
) -> Dict[str, List[Tuple[str, ...]]]:
    """Group task-homogeneous batches by task, keeping only ``tasks`` if given.

    Raises:
        TaskScheduleError: A batch mixes tasks, an utterance has no task, or a requested
            task has no batch.
    """
    groups: Dict[str, List[Tuple[str, ...]]] = {}
    for batch in batches:
        kinds = {task_of.get(u) for u in batch}
        if None in kinds:
            missing = next(u for u in batch if u not in task_of)
            raise TaskScheduleError(f"utterance {missing} has no task in utt2category")
        if len(kinds) != 1:
            raise TaskScheduleError(
                f"a batch mixes tasks {sorted(kinds)}: use batch_type folded, which "
                "builds batches per utt2category"
            )
        groups.setdefault(kinds.pop(), []).append(tuple(batch))
    if tasks is not None:
        missing = [t for t in tasks if t not in groups]
        if missing:
            raise TaskScheduleError(f"no data for task(s) {missing}")
        groups = {t: groups[t] for t in tasks}
    return groups
