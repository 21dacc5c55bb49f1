#!/usr/bin/env python3
"""Mask files on disk vs the 1-bit-per-weight bound, at Whisper size.

Builds random masks for several tasks over Whisper's prunable weights (Linear/Conv
weights and the token embedding, the default scope), saves them with
:func:`espnet_pruning.pruning.storage.save_masks` and prints the bytes on disk (mask
files and manifest) against ``tasks * ceil(n / 8)`` (goal: <= 1.01x), plus save and
load times and a round-trip check.

Run:
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_storage.py --size small --tasks 3
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from benchlib import whisper_shapes

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.storage import MANIFEST, load_masks, save_masks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", default="small", choices=["tiny", "base", "small", "medium"]
    )
    parser.add_argument("--tasks", type=int, default=3, help="number of task masks")
    args = parser.parse_args()
    shapes = whisper_shapes(args.size, embedding=True)
    g = torch.Generator().manual_seed(0)
    densities = [0.64, 0.32768, 0.8, 0.5, 0.9, 0.2, 0.7][: args.tasks]
    masks = {
        f"task{i}": {n: torch.rand(s, generator=g) < d for n, s in shapes.items()}
        for i, d in enumerate(densities)
    }
    ms = MaskSet(shapes, masks)
    n = ms.numel()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        d = save_masks(ms, Path(tmp) / "masks")
        t_save = time.perf_counter() - t0
        files = sorted(d.iterdir())
        total = sum(f.stat().st_size for f in files)
        manifest = (d / MANIFEST).stat().st_size
        t0 = time.perf_counter()
        loaded = load_masks(d)
        t_load = time.perf_counter() - t0
        same = loaded == ms
    bound = args.tasks * math.ceil(n / 8)
    print(
        f"Whisper-{args.size} prunable weights: {n:,}; {args.tasks} tasks "
        f"(densities {densities})"
    )
    print(
        f"1-bit bound: {bound:,} B   on disk: {total:,} B "
        f"(mask files {total - manifest:,} B + manifest {manifest:,} B)"
    )
    print(
        f"ratio on disk / bound: {total / bound:.5f}   "
        f"(bool tensors would be {8 * bound / total:.2f}x larger)"
    )
    print(f"save {t_save:.2f} s, load+verify {t_load:.2f} s, round trip equal: {same}")


if __name__ == "__main__":
    main()
