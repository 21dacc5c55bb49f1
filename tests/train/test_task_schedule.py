"""Per-task block schedule: exact pattern, determinism, DDP sharding, resumption."""

import pytest

from espnet_pruning.train.task_schedule import (
    TaskBlockSampler,
    TaskScheduleError,
    group_batches_by_task,
)

BATCHES = {
    "asr": [("a1", "a2"), ("a3", "a4"), ("a5", "a6")],
    "er": [("e1", "e2")],
    "ic": [("i1", "i2"), ("i3", "i4")],
}


def task_of_batch(batch):
    return {"a": "asr", "e": "er", "i": "ic"}[batch[0][0]]


def test_blocks_of_n_then_switch():
    sampler = TaskBlockSampler(BATCHES, block_size=2, rounds=3)
    seq = sampler.generate(seed=7)
    assert len(seq) == len(sampler) == 3 * 3 * 2
    tasks = [task_of_batch(b) for b in seq]
    blocks = [tasks[i : i + 2] for i in range(0, len(tasks), 2)]
    assert all(b[0] == b[1] for b in blocks)  # N consecutive batches of one task
    for r in range(3):  # every round visits every task exactly once
        assert sorted(b[0] for b in blocks[3 * r : 3 * r + 3]) == ["asr", "er", "ic"]
    # A task with fewer batches than a block cycles through them.
    er_batches = [b for b in seq if task_of_batch(b) == "er"]
    assert set(er_batches) == {("e1", "e2")} and len(er_batches) == 6


def test_deterministic_per_seed_and_different_across_seeds():
    s = TaskBlockSampler(BATCHES, block_size=1, rounds=4)
    assert s.generate(3) == s.generate(3)
    assert TaskBlockSampler(BATCHES, 1, 4).generate(3) == s.generate(3)  # resume
    orders = {tuple(task_of_batch(b) for b in s.generate(seed)) for seed in range(10)}
    assert len(orders) > 1


def test_ddp_ranks_see_the_same_task_each_step():
    r0 = TaskBlockSampler(BATCHES, 2, 2, rank=0, world_size=2).generate(5)
    r1 = TaskBlockSampler(BATCHES, 2, 2, rank=1, world_size=2).generate(5)
    assert len(r0) == len(r1)
    for b0, b1 in zip(r0, r1):
        assert task_of_batch(b0) == task_of_batch(b1)
        assert len(b0) == len(b1) == 1 and b0 != b1
    full = TaskBlockSampler(BATCHES, 2, 2).generate(5)
    assert [tuple(sorted(b0 + b1)) for b0, b1 in zip(r0, r1)] == [
        tuple(sorted(b)) for b in full
    ]


def test_batch_too_small_for_world_size():
    with pytest.raises(TaskScheduleError, match="cannot be split over 3"):
        TaskBlockSampler(BATCHES, 1, world_size=3)


def test_grouping():
    task_of = {u: task_of_batch((u,)) for bs in BATCHES.values() for b in bs for u in b}
    batches = [b for bs in BATCHES.values() for b in bs]
    assert group_batches_by_task(batches, task_of) == BATCHES
    assert list(group_batches_by_task(batches, task_of, ["ic"])) == ["ic"]
    with pytest.raises(TaskScheduleError, match="mixes tasks"):
        group_batches_by_task([("a1", "e1")], task_of)
    with pytest.raises(TaskScheduleError, match=r"no data for task\(s\) \['scr'\]"):
        group_batches_by_task(batches, task_of, ["scr"])
    with pytest.raises(TaskScheduleError, match="x9 has no task"):
        group_batches_by_task([("x9",)], task_of)


def test_block_size_zero_is_one_pass_over_each_task():
    sampler = TaskBlockSampler(BATCHES, block_size=0, rounds=2)
    seq = sampler.generate(seed=3)
    assert len(seq) == len(sampler) == 2 * (3 + 1 + 2)
    tasks = [task_of_batch(b) for b in seq]
    # Each round: three blocks, one per task, each the task's batches once.
    for r in range(2):
        chunk = seq[6 * r : 6 * r + 6]
        for task, batches in BATCHES.items():
            assert sorted(b for b in chunk if task_of_batch(b) == task) == batches
    runs = [t for i, t in enumerate(tasks) if i == 0 or tasks[i - 1] != t]
    assert len(runs) <= 6  # blocks are contiguous (adjacent blocks may share a task)


def test_single_task_block_zero_is_a_shuffled_epoch():
    sampler = TaskBlockSampler({"asr": BATCHES["asr"]}, block_size=0)
    assert sorted(sampler.generate(0)) == BATCHES["asr"]
    assert {tuple(sampler.generate(s)) for s in range(6)} != {tuple(BATCHES["asr"])}
