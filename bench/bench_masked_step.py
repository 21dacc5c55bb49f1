#!/usr/bin/env python3
"""A masked training step vs the dense step on the same openai-whisper model and batch.

The masked step is what Algorithm 2 and continual learning run: forward with
``call_with_masks`` (effective weights ``m ⊙ W``, out of place), backward, gradient
clipping, AdamW, and :class:`UpdateRestriction` keeping every entry outside the mask
bit-identical. The dense step is the same without masks. Denormals are flushed by
default (``--keep_denormals`` to keep them): on CPU their slow arithmetic depends on the
values, which differ between the two models. Steps of both kinds are
interleaved after a warm-up and the ratio of the median step times is printed (goal:
<= 1.10x on CPU at the tiny size; on a GPU at Whisper-small dims, <= 1.05x).

Run:
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_masked_step.py            # CPU, tiny
    tools/venv/bin/python bench/bench_masked_step.py --device cuda --dims small   # GPU
"""

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.pruning.apply import UpdateRestriction, call_with_masks, cast_masks
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import prune_layerwise_magnitude

DIMS = {
    # 2+2 layers, width 64, 5 s of audio, the real 51865-token vocabulary.
    "tiny": dict(
        n_mels=80,
        n_audio_ctx=250,
        n_audio_state=64,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=51865,
        n_text_ctx=32,
        n_text_state=64,
        n_text_head=2,
        n_text_layer=2,
    ),
    "small": dict(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=768,
        n_audio_head=12,
        n_audio_layer=12,
        n_vocab=51865,
        n_text_ctx=448,
        n_text_state=768,
        n_text_head=12,
        n_text_layer=12,
    ),
}


def build(dims: str, device: str, seed: int = 0):
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**DIMS[dims]))
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    model.to(device)
    ms = MaskSet.from_model(model, PruningScope(), ["t"])
    weights = {n: p.detach() for n, p in model.named_parameters()}
    mask = ms.mask("t")
    # 36 % sparsity in every tensor (the core method's first setting). Layer-wise: on
    # a random init a global threshold would prune every Linear weight, because the
    # N(0, 1) token embedding dwarfs them.
    for _ in range(2):
        mask = prune_layerwise_magnitude(weights, mask, 0.2)
    return model, {n: m.to(device) for n, m in mask.items()}


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
    args = parser.parse_args()
    if not args.keep_denormals:
        torch.set_flush_denormal(True)
    device = torch.device(args.device)
    dense, mask = build(args.dims, args.device)
    masked = copy.deepcopy(dense)
    d = dense.dims
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(args.batch, d.n_mels, 2 * d.n_audio_ctx, generator=g).to(device)
    tokens = torch.randint(0, d.n_vocab, (args.batch, args.text_len), generator=g).to(
        device
    )
    targets = torch.randint(0, d.n_vocab, (args.batch, args.text_len), generator=g).to(
        device
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

    opts = {"dense": make_opt(dense), "masked": make_opt(masked)}
    restriction = UpdateRestriction(dict(masked.named_parameters()), [opts["masked"]])
    restriction.set_trainable(mask)
    cast = cast_masks(masked, mask)  # once per task and device, as a trainer would
    start = {n: p.detach().clone() for n, p in masked.named_parameters()}

    def step(kind):
        model, opt = (
            (dense, opts["dense"]) if kind == "dense" else (masked, opts["masked"])
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if kind == "dense":
            logits = model(mel, tokens)
        else:
            logits = call_with_masks(model, cast, mel, tokens)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        step("dense"), step("masked")
    times = {"dense": [], "masked": []}
    for i in range(args.steps):
        order = ("dense", "masked") if i % 2 == 0 else ("masked", "dense")
        for kind in order:
            times[kind].append(step(kind))
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = sum(p.numel() for p in dense.parameters())
    print(
        f"Whisper dims {args.dims} ({n_params:,} parameters) on {device}, batch "
        f"{args.batch}, torch threads {torch.get_num_threads()}, {args.steps} steps each"
    )
    print(f"dense  step: median {med['dense'] * 1e3:8.1f} ms")
    print(
        f"masked step: median {med['masked'] * 1e3:8.1f} ms "
        f"(call_with_masks + UpdateRestriction)"
    )
    print(f"ratio masked / dense: {med['masked'] / med['dense']:.3f}")
    params = dict(masked.named_parameters())
    frozen_same = all(torch.equal(params[n][~m], start[n][~m]) for n, m in mask.items())
    untrained = [n for n, m in mask.items() if not (params[n][m] != start[n][m]).any()]
    print(
        f"(check) frozen entries bit-identical: {frozen_same}; "
        f"tensors whose kept entries never moved: {untrained or 'none'}"
    )
    if args.optim == "adamw" and device.type == "cpu":
        # Masked entries get exactly zero gradients, so their Adam second moments stay
        # exactly 0; torch's CPU sqrt (MKL's vector math with AVX-512) is
        # data-dependent: measured here on 3.3 M floats, 4.2 ms for ones, 1.3 ms for
        # 1e-30 and 20 ms for exact zeros. Time the optimizer's own sqrt on both
        # models' moments to show what that costs the masked step.
        sq = {}
        for kind in ("dense", "masked"):
            moments = [s["exp_avg_sq"] for s in opts[kind].state.values()]
            t0 = time.perf_counter()
            for _ in range(10):
                torch._foreach_sqrt(moments)
            sq[kind] = (time.perf_counter() - t0) / 10
        zeros = {
            k: sum(int((s["exp_avg_sq"] == 0).sum()) for s in opts[k].state.values())
            / n_params
            for k in opts
        }
        print(
            f"(note) sqrt of Adam's second moments alone: dense {sq['dense'] * 1e3:.1f} "
            f"ms ({100 * zeros['dense']:.0f} % zeros), masked "
            f"{sq['masked'] * 1e3:.1f} ms ({100 * zeros['masked']:.0f} % zeros); "
            f"ratio without that difference: "
            f"{(med['masked'] - (sq['masked'] - sq['dense'])) / med['dense']:.3f}"
        )


if __name__ == "__main__":
    main()
