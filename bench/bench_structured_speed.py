#!/usr/bin/env python3
"""Structured pruning's payoff: throughput of compiled task models against the dense model.

For each Whisper size, a random model of those dimensions gets one task's Hard-Concrete
gates (:class:`espnet_pruning.pruning.structured.GateSet`) set so that the deterministic
gates keep ``--keep`` of the heads and of the FFN units of every layer (chosen at random,
seeded); :func:`espnet_pruning.pruning.structured.compile_pruned` removes the others.
Interleaved in one process, the dense and the compiled model run

* the encoder over ``--seconds`` of log-Mel frames (Whisper pads audio to 30 s), and
* the decoder over a ``--tokens``-token prefix with that encoder output (one teacher-forced
  pass, the cost of scoring a hypothesis),

and the medians give throughput ratios (compiled / dense). Printed beside them: the
parameters of the gated structures kept, the whole model's parameters, and the MACs of
the gated structures (GateSet's count at the same input length). The compiled model's
outputs are checked against the gated model's first (≤ 1e-4 relative).

Run:
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_structured_speed.py --sizes tiny base small
"""

import argparse

import torch
from benchlib import N_VOCAB, SIZES
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.inference.timing import interleaved_medians
from espnet_pruning.pruning.hard_concrete import HardConcreteHparams
from espnet_pruning.pruning.structured import GateSet, compile_pruned
from espnet_pruning.whisper.checkpoint import init_whisper_parameters

HEADS = {"tiny": 6, "base": 8, "small": 12, "medium": 16}


def model_of(size: str) -> Whisper:
    d, layers, _ = SIZES[size]
    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=d,
        n_audio_head=HEADS[size],
        n_audio_layer=layers,
        n_vocab=N_VOCAB,
        n_text_ctx=448,
        n_text_state=d,
        n_text_head=HEADS[size],
        n_text_layer=layers,
    )
    return init_whisper_parameters(Whisper(dims), seed=0).float().eval()


@torch.no_grad()
def fixed_gates(
    model: Whisper, keep: float, seed: int, seconds: float, tokens: int
) -> GateSet:
    """Gates whose deterministic values keep ``round(keep · count)`` units per structure."""
    hparams = HardConcreteHparams(mac_input_seconds=seconds, mac_text_length=tokens)
    gates = GateSet(model, hparams, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for s in gates.structures:
        log_alpha = gates.gates[s.key].log_alpha
        kept = torch.randperm(s.count, generator=g)[: round(keep * s.count)]
        log_alpha.fill_(-10.0)
        log_alpha[kept] = 10.0  # unclamped: the evaluation rule keeps exactly these
    return gates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=SIZES)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    print(
        f"torch threads {torch.get_num_threads()}, batch {args.batch}, encoder over "
        f"{args.seconds:g} s, decoder over {args.tokens} tokens, keep {args.keep:g} of "
        f"heads and FFN units"
    )
    for size in args.sizes:
        dense = model_of(size)
        gates = fixed_gates(dense, args.keep, args.seed, args.seconds, args.tokens)
        compiled = compile_pruned(dense, gates).eval()
        frames = int(round(100 * args.seconds))  # 10 ms hop; the conv halves it
        mel = torch.randn(args.batch, 80, frames)
        tokens = torch.randint(0, N_VOCAB, (args.batch, args.tokens))
        with torch.no_grad():
            gates.attach(dense)
            ref = dense.decoder(tokens, dense.encoder(mel))
            gates.detach()
            got = compiled.decoder(tokens, compiled.encoder(mel))
            error = float((got - ref).abs().max() / ref.abs().max())
            audio = dense.encoder(mel)
            audio_c = compiled.encoder(mel)
        assert error <= 1e-4, f"compiled model differs from the gated one: {error}"
        results = {}
        with torch.no_grad():
            for part in ("encoder", "decoder"):
                if part == "encoder":
                    runs = {m: (lambda m=m: m.encoder(mel)) for m in (dense, compiled)}
                else:
                    runs = {
                        dense: (lambda: dense.decoder(tokens, audio)),
                        compiled: (lambda: compiled.decoder(tokens, audio_c)),
                    }
                medians = interleaved_medians(runs, args.repeats)
                results[part] = (medians[dense], medians[compiled])
        n_dense = sum(p.numel() for p in dense.parameters())
        n_comp = sum(p.numel() for p in compiled.parameters())
        kept_struct = 1 - gates.removed_params() / gates.total_params()
        macs_kept = float(
            sum(
                gates.kept_units()[s.name] * gates.unit_macs()[s.name]
                for s in gates.structures
            )
            / gates.total_macs()
        )
        print(
            f"\n{size}: parameters {n_dense / 1e6:.1f} M -> {n_comp / 1e6:.1f} M "
            f"({n_comp / n_dense:.3f}); gated structures kept {kept_struct:.3f} of their "
            f"parameters, {macs_kept:.3f} of their MACs ({args.seconds:g} s, "
            f"{gates.tokens} tokens); compiled vs gated max error {error:.1e}"
        )
        for part, (t_dense, t_comp) in results.items():
            print(
                f"  {part:8s} dense {1000 * t_dense:8.1f} ms  compiled "
                f"{1000 * t_comp:8.1f} ms  throughput x{t_dense / t_comp:.2f}"
            )


if __name__ == "__main__":
    main()
