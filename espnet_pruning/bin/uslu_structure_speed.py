#!/usr/bin/env python3
"""Measured speed of every task's compiled model (structured masks) against the dense one.

For each task of a structured mask set (``--mask_method hard_concrete``) the model is
compiled (:func:`~espnet_pruning.pruning.structured.compile_masked`: dropped heads and
FFN units removed) and, interleaved in this process with the dense model, runs

* the encoder over ``--seconds`` of audio (one utterance), and
* the decoder over ``--tokens`` tokens with that encoder output (one teacher-forced pass,
  the cost of scoring a hypothesis);

the medians give the speed-ups (dense time / compiled time). Beside them: the share of
the gated structures' parameters and MACs the task keeps (MACs at the same input
length). Written as JSON; stage 16 of ``slu.sh`` runs it, stage 23 shows the mean.

Example:
    python -m espnet_pruning.bin.uslu_structure_speed \\
        --train_config exp/uslu_train_uslu/config.yaml \\
        --mask_dir exp/hard_concrete/find_masks/multi_task/round2/masks \\
        --output exp/hard_concrete/structure_speed_q2.json
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.inference.timing import interleaved_medians
from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.pruning.structured import (
    compile_masked,
    frames_for_seconds,
    kept_units_of_mask,
    macs_per_unit,
    structures,
)
from espnet_pruning.tasks.uslu import USLUTask


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_config", type=Path, required=True)
    parser.add_argument(
        "--model_file", type=Path, default=None, help="weights (default: as built)"
    )
    parser.add_argument("--mask_dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="JSON to write")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    return parser


@torch.no_grad()
def measure(args: argparse.Namespace) -> Dict:
    """The speed-ups and kept shares of every masked task."""
    model, _ = USLUTask.build_model_from_file(args.train_config, args.model_file)
    model.eval()
    masks = load_masks(args.mask_dir)
    found = structures(model)
    frames = frames_for_seconds(args.seconds)
    params = {s.name: s.count * s.params_per_unit for s in found}
    macs = {s.name: macs_per_unit(s, frames, args.tokens) for s in found}
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(1, int(16000 * args.seconds), generator=g)
    lengths = torch.tensor([speech.size(1)])
    tokens = torch.randint(0, model.vocab_size, (1, args.tokens), generator=g)
    token_lengths = torch.tensor([args.tokens])
    results = {}
    for task in masks.tasks:
        try:
            kept = kept_units_of_mask(model, masks.mask(task))
            compiled = compile_masked(model, masks.mask(task)).eval()
        except ValueError as e:
            raise InputError(f"{args.mask_dir}: task {task}: {e}") from None
        models = {"dense": model, "compiled": compiled}
        enc = {k: m.encode(speech, lengths) for k, m in models.items()}
        encoder = interleaved_medians(
            {k: (lambda m=m: m.encode(speech, lengths)) for k, m in models.items()},
            args.repeats,
        )
        decoder = interleaved_medians(
            {
                k: (
                    lambda m=m, k=k: m.decoder(
                        enc[k][0], enc[k][1], tokens, token_lengths
                    )
                )
                for k, m in models.items()
            },
            args.repeats,
        )
        n_kept = {s.name: int(kept[s.name].sum()) for s in found}
        results[task] = dict(
            kept_params=sum(n_kept[s.name] * s.params_per_unit for s in found)
            / sum(params.values()),
            kept_macs=sum(n_kept[s.name] * macs[s.name] for s in found)
            / sum(s.count * macs[s.name] for s in found),
            encoder_speedup=encoder["dense"] / encoder["compiled"],
            decoder_speedup=decoder["dense"] / decoder["compiled"],
        )
        print(
            f"{task}: keeps {100 * results[task]['kept_params']:.1f} % of the gated "
            f"parameters, {100 * results[task]['kept_macs']:.1f} % of their MACs; "
            f"encoder x{results[task]['encoder_speedup']:.2f}, decoder "
            f"x{results[task]['decoder_speedup']:.2f}"
        )
    mean = {
        k: statistics.mean(r[k] for r in results.values())
        for k in ("kept_params", "kept_macs", "encoder_speedup", "decoder_speedup")
    }
    return dict(
        seconds=args.seconds,
        tokens=args.tokens,
        repeats=args.repeats,
        threads=torch.get_num_threads(),
        tasks=results,
        mean=mean,
    )


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)

    def run() -> None:
        result = measure(args)
        atomic_write_text(args.output, json.dumps(result, indent=1) + "\n")

    exit_on_input_error(run)


if __name__ == "__main__":
    main()
