#!/usr/bin/env python3
"""Whisper base with and without padding to 30 s: zero-shot WER and step-time ratio.

Decides the mini recipe's ``do_pad_trim`` (``conf/pretrained_base/train_uslu.yaml``). On a
dev subset of the mini corpus's ASR utterances (``dump/raw/<set>``, task
``asr_librispeech``), for both settings of our encoder over the same weights:

* zero-shot greedy WER with Whisper's own prompt ``<|en|> <|transcribe|> <|notimestamps|>``
  (upper-cased, punctuation removed: the corpus writes LibriSpeech-style text);
* the time of one training step (forward, backward; batch of ``--batch`` utterances) and of
  encoding plus greedy decoding, as ratios padded / unpadded measured in the same run.

Run (after ``make -C tools whisper-base`` and stages 1-3 of the mini recipe):
    OMP_NUM_THREADS=2 tools/venv/bin/python bench/bench_pad_trim.py \\
        --data egs2/mini_uslu/slu1/dump/raw/valid --n 16
"""

import argparse
import re
import statistics
import time
from pathlib import Path

import editdistance
import soundfile
import torch

from espnet_pruning.fileio import read_kaldi_map
from espnet_pruning.whisper.beam_search import greedy_search
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [
    50258,
    50259,
    50359,
    50363,
]  # <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>
EOT = 50257


def normalise(text: str) -> list:
    return re.sub(r"[^A-Z0-9' ]", " ", text.upper()).split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dump/raw/<set>")
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "tools/downloads/whisper/base.pt"
    )
    parser.add_argument("--task", default="asr_librispeech")
    parser.add_argument("--n", type=int, default=16, help="utterances of the subset")
    parser.add_argument(
        "--batch", type=int, default=8, help="utterances per training step"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed steps per setting"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    from whisper.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(multilingual=True)
    tasks = read_kaldi_map(args.data / "utt2category")
    texts = read_kaldi_map(args.data / "text")
    wavs = read_kaldi_map(args.data / "wav.scp")
    uids = [u for u in sorted(tasks) if tasks[u] == args.task][: args.n]
    audio = {
        u: torch.from_numpy(soundfile.read(wavs[u], dtype="float32")[0]) for u in uids
    }
    print(
        f"{len(uids)} utterances of {args.task} in {args.data}, "
        f"{statistics.mean(a.numel() for a in audio.values()) / 16000:.2f} s on average"
    )

    decoder = WhisperDecoder(51865, 512, whisper_checkpoint=str(args.checkpoint))
    results = {}
    for pad in (False, True):
        encoder = WhisperEncoder(
            whisper_checkpoint=str(args.checkpoint), do_pad_trim=pad
        )
        encoder.eval(), decoder.eval()
        errors = words = 0
        start = time.perf_counter()
        with torch.no_grad():
            for u in uids:
                wav = audio[u]
                enc, _, _ = encoder(wav[None], torch.tensor([wav.numel()]))
                hyp = normalise(
                    tokenizer.decode(greedy_search(decoder, enc[0], PROMPT, EOT, 60))
                )
                ref = normalise(texts[u])
                errors += editdistance.eval(hyp, ref)
                words += len(ref)
        decode_s = time.perf_counter() - start
        # One training step: a padded batch of the first utterances, teacher forcing.
        encoder.train(), decoder.train()
        batch = [audio[u] for u in uids[: args.batch]]
        lens = torch.tensor([a.numel() for a in batch])
        xs = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
        ys = torch.tensor([PROMPT + [400] * 12] * len(batch))
        times = []
        for _ in range(args.repeats + 1):
            t = time.perf_counter()
            enc, enc_lens, _ = encoder(xs, lens)
            logits, _ = decoder(enc, enc_lens, ys, None)
            logits.logsumexp(-1).mean().backward()
            times.append(time.perf_counter() - t)
            encoder.zero_grad(), decoder.zero_grad()
        results[pad] = (100.0 * errors / words, decode_s, statistics.median(times[1:]))
        print(
            f"do_pad_trim={pad}: zero-shot WER {results[pad][0]:.1f} %, "
            f"decode {decode_s:.1f} s, training step {results[pad][2]:.2f} s"
        )
    print(
        f"padded / unpadded: decoding {results[True][1] / results[False][1]:.2f}x, "
        f"training step {results[True][2] / results[False][2]:.2f}x"
    )


if __name__ == "__main__":
    main()
