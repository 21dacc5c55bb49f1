"""Our encoder and decoder on OpenAI's Whisper base weights equal openai-whisper exactly.

Weights: ``make -C tools whisper-base`` (CI runs it). Speech: the real AN4 recordings inside
the espnet source distribution that ``make -C tools`` fetches
(``egs2/mini_an4/asr1/downloads.tar.gz``, NIST sphere, 16 kHz).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
from an4 import SDIST, an4_recordings
from whisper.audio import log_mel_spectrogram, pad_or_trim

from espnet_pruning.whisper.beam_search import greedy_search
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder

BASE = (
    Path(__file__).resolve().parents[2] / "tools" / "downloads" / "whisper" / "base.pt"
)
#: ``<|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>``
PROMPT = [50258, 50259, 50359, 50363]
EOT = 50257

pytestmark = pytest.mark.skipif(
    not (BASE.is_file() and SDIST.is_file()),
    reason=f"needs {BASE} (make -C tools whisper-base) and {SDIST} (make -C tools)",
)


@pytest.fixture(scope="module")
def recordings():
    return an4_recordings()


@pytest.fixture(scope="module")
def models():
    reference = whisper.load_model(str(BASE), device="cpu").eval()
    encoder = WhisperEncoder(whisper_checkpoint=str(BASE), do_pad_trim=True).eval()
    decoder = WhisperDecoder(
        vocab_size=51865, encoder_output_size=512, whisper_checkpoint=str(BASE)
    ).eval()
    return reference, encoder, decoder


def test_an4_has_real_speech(recordings):
    assert len(recordings) == 8
    assert all(a.size >= 11200 and np.abs(a).max() > 0.03 for a in recordings.values())


@torch.no_grad()
def test_log_mel_encoder_and_logits_equal_openai_whisper(recordings, models):
    reference, encoder, decoder = models
    for name, audio in list(recordings.items())[:3]:
        wav = torch.from_numpy(audio)
        mel_ref = log_mel_spectrogram(pad_or_trim(wav))
        mel, _ = encoder.log_mel_spectrogram(pad_or_trim(wav)[None])
        assert torch.equal(mel[0], mel_ref), name

        enc_ref = reference.encoder(mel_ref[None])
        enc, enc_lens, _ = encoder(wav[None], torch.tensor([wav.numel()]))
        assert torch.equal(enc, enc_ref), name

        tokens = torch.tensor([PROMPT + [440, 2068]])
        logits_ref = reference.decoder(tokens, enc_ref)
        logits, _ = decoder(enc, enc_lens, tokens, torch.tensor([tokens.size(1)]))
        assert torch.equal(logits, logits_ref.float()), name


@torch.no_grad()
def test_greedy_search_ids_equal_whisper_decode(recordings, models):
    reference, encoder, decoder = models
    options = whisper.DecodingOptions(
        language="en", without_timestamps=True, fp16=False
    )
    texts = []
    for name, audio in recordings.items():
        wav = torch.from_numpy(audio)
        mel = log_mel_spectrogram(pad_or_trim(wav))
        result = whisper.decode(reference, mel, options)
        enc, _, _ = encoder(wav[None], torch.tensor([wav.numel()]))
        assert greedy_search(decoder, enc[0], PROMPT, EOT) == result.tokens, name
        texts.append(result.text)
    # Real speech, really recognised: AN4 is spelled letters and numbers.
    assert sum(bool(t.strip()) for t in texts) == len(texts)
