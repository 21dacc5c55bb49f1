#!/usr/bin/env python3
"""Peak memory of masked training steps against dense ones, each in a fresh process.

For every size and kind a child process builds an openai-whisper model of those
dimensions, an AdamW optimizer and a batch of short utterances, runs ``--steps``
training steps (the first creates Adam's moments) and reports its peak resident memory
(``ru_maxrss``). Kinds:

* ``dense``: no masks;
* ``masked``: :class:`~espnet_pruning.train.masked_training.MaskedTraining` as the
  recipes run it (``update_outside_mask: freeze``; weights masked in place per task
  block, values set aside);
* ``out_of_place``: the previous path, ``call_with_masks`` + ``UpdateRestriction``.

The masks prune 36 % of every prunable tensor at random (the core method's first
sparsity); the masked child also switches tasks once and prints the time. Ratios are
against the dense child of the same size in the same run.

glibc's allocator keeps freed mid-sized blocks resident in its heap (its mmap threshold
rises as large blocks are freed), and which blocks stay depends on the order of every
allocation: the same dense step's peak moved by 0.15 GB at small dims between runs.
``--mmap_threshold`` (default 128 KiB, glibc's starting value) fixes the threshold in
the children (``MALLOC_MMAP_THRESHOLD_``), so that every block of that size or more is
returned when freed and the peaks measure what is live; ``--mmap_threshold 0`` keeps
glibc's dynamic default, and ``--repeats`` then gives the median of several children.

Run:
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_masked_memory.py \
        --dims small medium --kinds dense masked out_of_place
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_masked_memory.py \
        --mmap_threshold 0 --repeats 3
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from benchlib import DIMS, build_whisper, random_masks, training_batch, whisper_step

from espnet_pruning.pruning.apply import UpdateRestriction, call_with_masks, cast_masks
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.train.masked_training import MaskedTraining


def child(dims: str, kind: str, batch: int, steps: int, sparsity: float) -> dict:
    torch.set_flush_denormal(True)
    model = build_whisper(dims)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    data = training_batch(model.dims, batch)
    out = {"dims": dims, "kind": kind, "params": n_params}
    forward = None
    if kind != "dense":
        masks = MaskSet.ones(
            ["a", "b"], MaskSet.from_model(model, PruningScope(), ["a"]).shapes
        )
        for i, task in enumerate(masks.tasks):
            masks.set_mask(task, random_masks(masks.shapes, sparsity, seed=i))
        out["masked_weights"] = masks.numel()
        if kind == "masked":
            training = MaskedTraining(masks, update_outside_mask="freeze")
            training.bind_optimizers(model, [opt])

            def masked_forward(*args):
                training.use_masks(model, "a")
                return model(*args)

            forward = masked_forward

        else:
            restriction = UpdateRestriction(dict(model.named_parameters()), [opt])
            mask = masks.mask("a")
            restriction.set_trainable(mask)
            cast = cast_masks(model, mask)
            del mask

            def out_of_place_forward(*args):
                return call_with_masks(model, cast, *args)

            forward = out_of_place_forward

    times = [whisper_step(model, opt, data, forward) for _ in range(steps)]
    out["step_s"] = times[-1]
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if kind == "masked":
        opt.zero_grad(set_to_none=True)  # a task switch comes at a batch's forward
        t0 = time.perf_counter()
        training.use_masks(model, "b")
        training.use_masks(model, "a")
        out["switch_s"] = (time.perf_counter() - t0) / 2
        out["set_aside_bytes"] = training.set_aside_bytes
        out["host_mask_bytes"] = masks.nbytes
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["switch_peak_rss_bytes"] = rss
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dims", nargs="+", default=["small", "medium"], choices=sorted(DIMS)
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["dense", "masked"],
        choices=["dense", "masked", "out_of_place"],
    )
    parser.add_argument("--batch", type=int, default=1, help="utterances of 5 s")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.36)
    parser.add_argument(
        "--mmap_threshold",
        type=int,
        default=131072,
        help="glibc MALLOC_MMAP_THRESHOLD_ of the children in bytes (0: dynamic default)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="children per kind (median peak)"
    )
    parser.add_argument(
        "--child", nargs=2, metavar=("DIMS", "KIND"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.batch, args.steps, args.sparsity)))
        return
    env = dict(os.environ)
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    allocator = (
        f"mmap threshold fixed at {args.mmap_threshold} B"
        if args.mmap_threshold
        else "glibc's dynamic mmap threshold"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"batch {args.batch} x 5 s, {args.steps} AdamW steps, sparsity {args.sparsity}, "
        f"{allocator}, median of {args.repeats} children"
    )
    for dims in args.dims:
        rows = {}
        for kind in args.kinds:
            runs = []
            for _ in range(args.repeats):
                res = subprocess.run(
                    [sys.executable, __file__, "--child", dims, kind]
                    + ["--batch", str(args.batch), "--steps", str(args.steps)]
                    + ["--sparsity", str(args.sparsity)],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if res.returncode != 0:
                    last = res.stderr.strip().splitlines()[-1:]
                    print(f"{dims} {kind}: failed (rc {res.returncode}): {last}")
                    break
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            if runs:
                runs.sort(key=lambda r: r["peak_rss_bytes"])
                rows[kind] = runs[len(runs) // 2]
                rows[kind]["all_peaks_gb"] = [
                    round(r["peak_rss_bytes"] / 1e9, 2) for r in runs
                ]
        base = rows.get("dense")
        for kind, r in rows.items():
            gb = r["peak_rss_bytes"] / 1e9
            ratio = (
                f"{r['peak_rss_bytes'] / base['peak_rss_bytes']:.3f}" if base else "-"
            )
            line = (
                f"{dims:6s} {kind:12s} {r['params'] / 1e6:7.1f} M params  peak RSS "
                f"{gb:6.2f} GB  x dense {ratio}  last step {r['step_s']:.2f} s"
            )
            if len(r["all_peaks_gb"]) > 1:
                line += f"  (peaks of the children: {r['all_peaks_gb']} GB)"
            if kind == "masked":
                line += (
                    f"  set aside {r['set_aside_bytes'] / r['masked_weights']:.2f} B/masked "
                    f"weight  host masks {8 * r['host_mask_bytes'] / r['masked_weights'] / 2:.3f}"
                    f" bit/weight/task  task switch {r['switch_s']:.2f} s (peak RSS after "
                    f"it {r['switch_peak_rss_bytes'] / 1e9:.2f} GB)"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
