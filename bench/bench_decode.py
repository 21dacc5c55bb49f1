#!/usr/bin/env python3
"""Greedy decoding speed: the decoder before the cache, the cached one, openai-whisper.

One process, one model, one audio: the encoder output of the audio (padded to 30 s as
openai-whisper does) is computed once and every decoder gets the same one. Printed per
decoder: tokens, seconds and tokens per second of the decoding alone (the encoder is not
timed), and whether its token ids equal the cached decoder's. Decoders:

* ``full prefix``: the project's decoder before the cache (``FullPrefixScorer``: the
  whole prefix through every layer at every step), in ESPnet's ``BatchBeamSearch``;
* ``cached``: ``WhisperDecoder`` (self-attention cache, cross-attention keys/values once
  per utterance) in the same search;
* ``openai-whisper``: ``whisper.decode`` (its own KV cache) with
  ``DecodingOptions(language="en", without_timestamps=True, fp16=False)`` and its token
  suppression switched off, so that all three choose the argmax of the same distribution;
* ``cached, batch of B`` and ``openai-whisper, batch of B``: B copies of the audio in
  one call (tokens per second of the whole batch).

The model is Whisper base from ``tools/downloads/whisper/base.pt`` (or ``--whisper``) when
that file exists,
else a random model of Whisper tiny's dimensions (which never ends a hypothesis: every
decoder then writes ``--max_tokens`` tokens). Goals: cached ≥ 3× full prefix, and per
token no slower than openai-whisper.

Run:
    OMP_NUM_THREADS=1 tools/venv/bin/python bench/bench_decode.py [--audio a.wav]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
import whisper
from benchlib import whisper_or_random
from espnet2.legacy.nets.scorers.length_bonus import LengthBonus

from espnet_pruning.whisper.beam_search import WhisperBeamSearch
from espnet_pruning.whisper.decoder import FullPrefixScorer, WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder

BASE = Path(__file__).resolve().parents[1] / "tools/downloads/whisper/base.pt"


def search(scorer, primer, eos, n_text_ctx):
    return WhisperBeamSearch(
        n_text_ctx=n_text_ctx,
        scorers=dict(decoder=scorer, length_bonus=LengthBonus(51865)),
        weights=dict(decoder=1.0, length_bonus=0.0),
        beam_size=1,
        vocab_size=51865,
        sos=primer[0],
        eos=eos,
        token_list=None,
        pre_beam_score_key="full",
        hyp_primer=primer,
    ).eval()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audio", help="16 kHz speech file (default: 8 s of tones)")
    parser.add_argument("--whisper", type=Path, default=BASE, help="openai-whisper .pt")
    parser.add_argument("--max_tokens", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8, help="B of the batched runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    model, what = whisper_or_random(args.whisper)
    dims = model.dims.__dict__
    enc = WhisperEncoder(whisper_dims=dims, do_pad_trim=True).eval()
    enc.encoders.load_state_dict(model.encoder.state_dict())
    dec = WhisperDecoder(51865, dims["n_audio_state"], whisper_dims=dims).eval()
    dec.decoders.load_state_dict(model.decoder.state_dict())
    if args.audio:
        audio, rate = soundfile.read(args.audio, dtype="float32")
        if rate != 16000 or audio.ndim != 1:
            parser.error(f"{args.audio}: need one channel at 16 kHz")
    else:
        t = np.arange(8 * 16000) / 16000
        audio = (0.1 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t)).astype(
            np.float32
        )
    tokenizer = whisper.tokenizer.get_tokenizer(True, language="en", task="transcribe")
    primer = list(tokenizer.sot_sequence_including_notimestamps)
    eos = tokenizer.eot
    with torch.no_grad():
        x = torch.as_tensor(audio)[None]
        memory = enc(x, torch.tensor([x.size(1)]))[0]  # (1, 1500, D)
        reference = model.encoder(
            whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))[None]
        )
        print(
            f"{what}; encoder output equals openai-whisper's: "
            f"{torch.allclose(memory, reference, atol=1e-4)}"
        )

        def ours(scorer):
            hyp = search(scorer, primer, eos, dec.n_text_ctx)(
                memory[0], maxlenratio=-args.max_tokens
            )[0]
            return [t for t in hyp.yseq.tolist()[len(primer) :] if t != eos]

        options = whisper.DecodingOptions(
            language="en",
            without_timestamps=True,
            fp16=False,
            sample_len=args.max_tokens,
            suppress_tokens="",
            suppress_blank=False,
        )

        def openai(features):
            return [r.tokens for r in whisper.decode(model, features, options)]

        ours(dec), openai(memory)  # warm-up
        rows = []
        cached, sec = timed(lambda: ours(dec))
        rows.append(("cached", len(cached), sec, True))
        full, sec = timed(lambda: ours(FullPrefixScorer(dec)))
        rows.append(("full prefix (before the cache)", len(full), sec, full == cached))
        oa, sec = timed(lambda: openai(memory)[0])
        rows.append(("openai-whisper whisper.decode", len(oa), sec, oa == cached))
        batch = memory.expand(args.batch, -1, -1).contiguous()
        lengths = torch.full((args.batch,), batch.size(1))
        bs = search(dec, primer, eos, dec.n_text_ctx)
        hyps, sec = timed(
            lambda: bs(batch, maxlenratio=-args.max_tokens, x_lengths=lengths)
        )
        ids = [[t for t in h[0].yseq.tolist()[len(primer) :] if t != eos] for h in hyps]
        rows.append(
            (
                f"cached, batch of {args.batch}",
                sum(map(len, ids)),
                sec,
                all(i == cached for i in ids),
            )
        )
        oab, sec = timed(lambda: openai(batch))
        rows.append(
            (
                f"openai-whisper, batch of {args.batch}",
                sum(map(len, oab)),
                sec,
                all(i == cached for i in oab),
            )
        )

    print(
        f"{'decoder':38s} {'tokens':>7s} {'seconds':>8s} {'tokens/s':>9s} {'ms/token':>9s}"
        "  ids = cached"
    )
    for name, n, sec, same in rows:
        print(
            f"{name:38s} {n:7d} {sec:8.2f} {n / sec:9.1f} {1000 * sec / n:9.1f}  {same}"
        )
    speed = {name: n / sec for name, n, sec, _ in rows}
    print(
        f"cached / full prefix: {speed['cached'] / speed[rows[1][0]]:.2f}x (goal >= 3)"
    )
    print(
        f"cached / openai-whisper per token: "
        f"{speed['cached'] / speed[rows[2][0]]:.2f}x (goal >= 1)"
    )


if __name__ == "__main__":
    main()
