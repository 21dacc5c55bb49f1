#!/usr/bin/env python3
"""Task switching cost: writing another task's ``m_t ⊙ θ`` against one forward pass.

One Whisper model (``tools/downloads/whisper/base.pt`` or ``--whisper``; else a random model
of Whisper tiny's dimensions) with masks for three tasks over its prunable weights (the
default scope: Linear/Conv weights and the token embedding; densities 0.64, 0.41, 0.80).
:class:`espnet_pruning.pruning.switch.TaskSwitcher` switches tasks round-robin; printed:
the mean switch time, the time of one forward pass (encoder over 30 s + decoder over a
24-token prefix), and their ratio (goal: a switch costs at most one pass over the masked
weights, i.e. about one forward or less).

Run:
    OMP_NUM_THREADS=1 tools/venv/bin/python bench/bench_task_switch.py
"""

import argparse
import time
from pathlib import Path

import torch
from benchlib import whisper_or_random

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.switch import TaskSwitcher

BASE = Path(__file__).resolve().parents[1] / "tools/downloads/whisper/base.pt"
DENSITIES = {"task_a": 0.64, "task_b": 0.41, "task_c": 0.80}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--whisper", type=Path, default=BASE, help="openai-whisper .pt")
    parser.add_argument("--switches", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, what = whisper_or_random(args.whisper)
    masks = MaskSet.from_model(model, PruningScope(), list(DENSITIES))
    g = torch.Generator().manual_seed(0)
    for task, density in DENSITIES.items():
        masks.set_mask(
            task,
            {n: torch.rand(s, generator=g) < density for n, s in masks.shapes.items()},
        )
    switcher = TaskSwitcher(model, masks)
    mel = torch.randn(1, model.dims.n_mels, 3000)
    tokens = torch.randint(0, 50000, (1, 24))
    with torch.no_grad():
        model(mel, tokens)  # warm-up
        start = time.perf_counter()
        model(mel, tokens)
        forward = time.perf_counter() - start
        tasks = list(DENSITIES) * (args.switches // len(DENSITIES))
        start = time.perf_counter()
        for task in tasks:
            switcher.switch(task)
        switch = (time.perf_counter() - start) / len(tasks)
    n_masked = masks.numel()
    print(f"{what}: {n_masked / 1e6:.1f} M masked weights, 3 tasks")
    print(f"switch (mean of {len(tasks)}): {1000 * switch:8.1f} ms")
    print(f"one forward:             {1000 * forward:8.1f} ms")
    print(f"switch / forward: {switch / forward:.3f}")


if __name__ == "__main__":
    main()
