#!/usr/bin/env python3
"""Masked training steps vs the dense step on the same openai-whisper model and batch.

The masked steps are what Algorithm 2 and continual learning run
(:class:`~espnet_pruning.train.masked_training.MaskedTraining` with
``update_outside_mask: freeze``): the task's masks written into the weights in place
for the task block, the pruned values set aside, gradients masked as they are
accumulated, every entry outside the mask kept bit-identical. ``masked`` is Algorithm
2's case: another task's block came first, so AdamW's moments are non-zero at the
task's pruned entries and they are zeroed again after every step (two passes over the
masked weights per step). ``masked_one_task`` is continual learning's: only one mask
has been trained since the optimizer was built, the moments are exactly zero there,
and the re-zeroing pass is skipped (one pass). ``(mask work)`` times one such pass
alone, and the passes inside each kind's timed steps: figures far less noisy than the
ratio of two step times (single steps vary by 10-30 % on a shared 2-core VM; the
paired ratios of each round are printed with their range).
``--out_of_place`` adds the previous path (``call_with_masks``, masked copies of the
weights every forward, and :class:`UpdateRestriction`). The dense step is the same
without masks. Steps of all kinds are interleaved after a warm-up and the ratios of
the median step times are printed (goals on CPU: <= 1.10x at tiny, <= 1.05x at small
and medium; on a GPU <= 1.05x at small). Denormals are flushed by default
(``--keep_denormals``): on CPU their slow arithmetic depends on the values, which
differ between the models.

Each kind has its own model and AdamW, except with ``--shared_model`` (the default at
medium, where two models with Adam state do not fit in 24 GB): one model and
optimizer then take dense and masked steps in turn, the masks applied and restored
outside the timed steps. The dense steps then also update the Adam moments of the
pruned entries, so the shared run leaves out the cost of torch's CPU square root on
exactly-zero moments, which a separate run prints (``(note)``; ``--optim adamw_fused``
avoids it).

Run:
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_masked_step.py            # CPU, tiny
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_masked_step.py --dims small \
        --steps 9 --warmup 1 [--optim adamw_fused]
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_masked_step.py --dims medium \
        --steps 3 --warmup 1 [--optim adamw_fused]
    tools/venv/bin/python bench/bench_masked_step.py --device cuda --dims small   # GPU
"""

import argparse
import collections
import copy
import functools
import statistics
import time

import torch
from benchlib import DIMS, build_whisper, random_masks, training_batch, whisper_step

from espnet_pruning.pruning import in_place
from espnet_pruning.pruning.apply import UpdateRestriction, call_with_masks, cast_masks
from espnet_pruning.pruning.in_place import InPlaceMasks
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.train.masked_training import MaskedTraining


class MaskWork:
    """Seconds the in-place masks' passes take inside the timed steps, per step kind.

    A direct measurement of the masking overhead, free of the step times' noise. It
    wraps the gradient hook's function (before any mask is applied: the hooks bind it
    then) and the re-zeroing methods of :class:`InPlaceMasks` for this process. On a
    GPU the passes are asynchronous and this times only their launch.
    """

    def __init__(self):
        self.kind = None  # the kind of the step being timed, if any
        self.seconds = collections.Counter()
        self.steps = collections.Counter()
        in_place._mask_gradient = self._timed(in_place._mask_gradient)
        for name in ("rezero", "regather", "unzero"):
            setattr(InPlaceMasks, name, self._timed(getattr(InPlaceMasks, name)))

    def _timed(self, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.kind is None:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[self.kind] += time.perf_counter() - t0

        return timed

    def per_step(self, kind: str) -> float:
        return self.seconds[kind] / max(self.steps[kind], 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", default="tiny", choices=sorted(DIMS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--text_len", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20, help="measured steps per kind")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--optim",
        default="adamw",
        choices=["adamw", "adamw_fused", "sgd"],
        help="adamw: torch's default (foreach) AdamW, what ESPnet builds from "
        "'optim: adamw'; adamw_fused: optim_conf {fused: true} (one kernel per tensor, "
        "also on CPU); sgd (momentum 0.9) has no square root of second moments. See "
        "the note printed after an AdamW run",
    )
    parser.add_argument(
        "--keep_denormals",
        action="store_true",
        help="do not flush denormals; on CPU, denormal arithmetic (tiny Adam second "
        "moments) is slow and value-dependent, so the masked and dense models differ "
        "for reasons other than masking overhead",
    )
    parser.add_argument("--out_of_place", action="store_true")
    parser.add_argument("--shared_model", action="store_true")
    parser.add_argument(
        "--no_one_task",
        action="store_true",
        help="leave out masked_one_task (saves a model copy)",
    )
    parser.add_argument("--sparsity", type=float, default=0.36)
    args = parser.parse_args()
    if not args.keep_denormals:
        torch.set_flush_denormal(True)
    shared = args.shared_model or args.dims == "medium"
    device = torch.device(args.device)
    work = MaskWork()
    dense = build_whisper(args.dims).to(device)
    masks = MaskSet.from_model(dense, PruningScope(), ["t", "u"])
    masks.set_mask("t", random_masks(masks.shapes, args.sparsity))
    masks.set_mask("u", random_masks(masks.shapes, args.sparsity, seed=1))
    kinds = ["dense", "masked"]
    if not (shared or args.no_one_task):
        kinds.append("masked_one_task")
    if args.out_of_place:
        kinds.append("out_of_place")
    models = {
        k: dense if shared or k == "dense" else copy.deepcopy(dense) for k in kinds
    }
    data = tuple(
        t.to(device) for t in training_batch(dense.dims, args.batch, args.text_len)
    )

    def make_opt(model):
        if args.optim == "sgd":
            return torch.optim.SGD(
                model.parameters(), lr=1e-5, momentum=0.9, weight_decay=0.01
            )
        return torch.optim.AdamW(
            model.parameters(),
            lr=1e-5,
            weight_decay=0.01,
            fused=args.optim == "adamw_fused",
        )

    opts = {k: make_opt(m) for k, m in models.items() if m is not dense or k == "dense"}
    opts.update({k: opts["dense"] for k in kinds if k not in opts})
    masked = models["masked"]
    forwards = {"dense": None}
    trainings = {}
    for kind in ("masked", "masked_one_task"):
        if kind not in kinds:
            continue
        trainings[kind] = MaskedTraining(masks, update_outside_mask="freeze")
        trainings[kind].bind_optimizers(models[kind], [opts[kind]])

        def masked_forward(*a, kind=kind, task="t"):
            trainings[kind].use_masks(models[kind], task)
            return models[kind](*a)

        forwards[kind] = masked_forward
    training = trainings["masked"]
    # Algorithm 2's case: a block of another task first (not timed).
    whisper_step(
        masked, opts["masked"], data, lambda *a: forwards["masked"](*a, task="u")
    )
    start = {} if shared else {n: v.clone() for n, v in masked.state_dict().items()}
    if args.out_of_place:
        oop = models["out_of_place"]
        restriction = UpdateRestriction(
            dict(oop.named_parameters()), [opts["out_of_place"]]
        )
        mask = {n: m.to(device) for n, m in masks.mask("t").items()}
        restriction.set_trainable(mask)
        cast = cast_masks(oop, mask)
        forwards["out_of_place"] = lambda *a: call_with_masks(oop, cast, *a)

    def step(kind):
        if shared:  # outside the timed step: a task block starts or ends
            if kind == "dense":
                training.restore()
            else:
                training.use_masks(masked, "t")
        return whisper_step(models[kind], opts[kind], data, forwards[kind])

    for _ in range(args.warmup):
        for kind in kinds:
            step(kind)
    times = {k: [] for k in kinds}
    for i in range(args.steps):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            work.kind = kind
            times[kind].append(step(kind))
            work.kind = None
            work.steps[kind] += 1
    training.restore()
    t0 = time.perf_counter()
    training.use_masks(masked, "t")
    t_apply = time.perf_counter() - t0
    t0 = time.perf_counter()
    training.restore()
    t_restore = time.perf_counter() - t0
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = sum(p.numel() for p in dense.parameters())
    print(
        f"Whisper dims {args.dims} ({n_params:,} parameters) on {device}, batch "
        f"{args.batch} x 5 s, torch threads {torch.get_num_threads()}, {args.steps} "
        f"steps each{', one shared model' if shared else ''}"
    )
    for k in kinds:
        # Each round times every kind back to back: its own ratios are paired, so a
        # slow stretch of the machine moves both sides of one.
        paired = sorted(a / b for a, b in zip(times[k], times["dense"]))
        print(
            f"{k:15s} step: median {med[k] * 1e3:9.1f} ms  ratio / dense "
            f"{med[k] / med['dense']:.3f}  paired ratio median "
            f"{statistics.median(paired):.3f} (range {paired[0]:.3f}-{paired[-1]:.3f})"
        )
    print(
        f"task block start (apply masks in place) {t_apply * 1e3:.1f} ms, end "
        f"(restore) {t_restore * 1e3:.1f} ms"
    )
    one_pass = InPlaceMasks(dict(dense.named_parameters()))
    one_pass.apply("t", masks)
    passes = []
    for _ in range(3):
        t0 = time.perf_counter()
        one_pass.rezero()
        passes.append(time.perf_counter() - t0)
    one_pass.restore()
    t_pass = statistics.median(passes)
    print(
        f"(mask work) one pass over the masked weights (the gradients' mask; the "
        f"re-zeroing is another) {t_pass * 1e3:.1f} ms = "
        f"{100 * t_pass / med['dense']:.1f} % of a dense step"
    )
    for k in kinds:
        if k.startswith("masked"):
            print(
                f"(mask work) inside the {k} steps: {work.per_step(k) * 1e3:.1f} ms a "
                f"step = {100 * work.per_step(k) / med['dense']:.1f} % of a dense step"
            )
    if not shared:
        params = dict(masked.named_parameters())
        mask = masks.mask("t")
        frozen_same = all(
            torch.equal(params[n][~m.to(device)], start[n][~m.to(device)])
            for n, m in mask.items()
        )
        print(f"(check) frozen entries bit-identical: {frozen_same}")
    if args.optim == "adamw" and device.type == "cpu" and not shared:
        # Masked entries get exactly zero gradients, so their Adam second moments stay
        # exactly 0. Time the optimizer's own sqrt on both models' moments to show what
        # a data-dependent sqrt would cost the masked step.
        moment_kinds = [k for k in ("dense", "masked", "masked_one_task") if k in kinds]
        sq, zeros = {}, {}
        for kind in moment_kinds:
            moments = [s["exp_avg_sq"] for s in opts[kind].state.values()]
            t0 = time.perf_counter()
            for _ in range(10):
                torch._foreach_sqrt(moments)
            sq[kind] = (time.perf_counter() - t0) / 10
            zeros[kind] = sum(int((m == 0).sum()) for m in moments) / n_params
        print("(note) sqrt of Adam's second moments alone:")
        for kind in moment_kinds:
            print(
                f"    {kind:15s} {sq[kind] * 1e3:7.1f} ms ({100 * zeros[kind]:.0f} % "
                f"zeros), {100 * (sq[kind] - sq['dense']) / med['dense']:+.1f} % of a "
                f"dense step"
            )


if __name__ == "__main__":
    main()
