#!/usr/bin/env python3
"""Global magnitude threshold: ours vs ``torch.nn.utils.prune.global_unstructured``.

Prunes exactly 20 % of random fp16-valued N(0, 0.02²) tensors with Whisper's Linear/Conv
weight shapes and prints seconds and peak extra resident memory of each method, then
their ratios (goal: ours >= 5x faster with <= 1/10 of torch's extra memory), and checks
that both pruned the same number of weights (their tie orders differ, so masks need
not be equal). ``--size medium`` (~708 M weights) runs ours alone (goal: <= 20 s,
< 0.5 GB extra besides the output masks). Memory method: see ``benchlib``.

Run (on an otherwise idle machine; each size needs ~4 bytes/weight for the weights):
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_threshold.py            # small
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_threshold.py --size medium
"""

import argparse

import torch
import torch.nn.utils.prune as torch_prune
from benchlib import fp16_valued_weights, gb, measure, whisper_shapes
from torch import nn

from espnet_pruning.pruning.select import num_to_prune, prune_global_magnitude


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", default="small", choices=["tiny", "base", "small", "medium"]
    )
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument(
        "--no_torch",
        action="store_true",
        help="skip torch.nn.utils.prune (default for medium)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    return parser


def ours(weights, fraction):
    mask = {n: torch.ones(w.shape, dtype=torch.bool) for n, w in weights.items()}
    mask_bytes = sum(m.numel() for m in mask.values())
    new, seconds, extra, method = measure(
        lambda: prune_global_magnitude(weights, mask, fraction)
    )
    pruned = mask_bytes - sum(int(m.sum()) for m in new.values())
    del new
    return seconds, extra, mask_bytes, pruned, method


def torch_global(weights, fraction):
    holders = []
    for n, w in weights.items():
        module = nn.Module()
        module.weight = nn.Parameter(w, requires_grad=False)  # shares storage
        holders.append((module, "weight"))

    def run():
        torch_prune.global_unstructured(
            holders, pruning_method=torch_prune.L1Unstructured, amount=fraction
        )

    _, seconds, extra, method = measure(run)
    pruned = sum(int((m.weight_mask == 0).sum()) for m, _ in holders)
    return seconds, extra, pruned, method


def main():
    args = get_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = whisper_shapes(args.size)
    weights = fp16_valued_weights(shapes)
    n = sum(w.numel() for w in weights.values())
    k = num_to_prune(n, args.fraction)
    print(
        f"Whisper-{args.size} Linear/Conv weights: {n:,} ({gb(4 * n)} fp32), "
        f"prune {k:,}, torch threads {torch.get_num_threads()}"
    )
    t_ours, m_ours, mask_bytes, pruned, method = ours(weights, args.fraction)
    print(
        f"ours : {t_ours:7.2f} s  extra peak {gb(m_ours)} "
        f"(of which output masks {gb(mask_bytes)}; working memory {gb(max(0, m_ours - mask_bytes))}) "
        f"pruned {pruned:,}  [{method}]"
    )
    assert pruned == k, (pruned, k)
    if args.no_torch or args.size == "medium":
        return
    t_torch, m_torch, pruned_torch, method = torch_global(weights, args.fraction)
    print(
        f"torch: {t_torch:7.2f} s  extra peak {gb(m_torch)}  pruned {pruned_torch:,}  [{method}]"
    )
    print(f"same count: {pruned_torch == pruned}")
    print(
        f"speed-up (torch time / ours): {t_torch / t_ours:.1f}x   "
        f"memory ratio (ours / torch): {m_ours / m_torch:.3f} "
        f"(working memory only: {max(0, m_ours - mask_bytes) / m_torch:.4f})"
    )


if __name__ == "__main__":
    main()
