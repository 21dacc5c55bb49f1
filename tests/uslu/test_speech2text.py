"""Speech2Text on a trained tiny model: the cached decoder gives today's token ids (greedy
and beam 4, dense and with a task mask), batches equal one-by-one, bad audio is an error.
"""

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_pruning.errors import DataError
from espnet_pruning.uslu.speech2text import Speech2Text


@pytest.fixture(scope="module")
def speeches(tiny_data):
    lines = (tiny_data / "valid" / "wav.scp").read_text().splitlines()
    return [sf.read(line.split()[1], dtype="float32")[0] for line in lines]


def s2t(exp, **kwargs):
    return Speech2Text(
        exp / "config.yaml",
        exp / "valid.loss.best.pth",
        kwargs.pop("task", "er_iemocap"),
        maxlenratio=-6,
        **kwargs,
    )


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_cached_decoder_gives_todays_token_ids(
    tiny_trained, tiny_er_masks, speeches, beam, masked
):
    opts = dict(beam_size=beam, nbest=beam, mask_dir=tiny_er_masks if masked else None)
    new, old = s2t(tiny_trained, **opts), s2t(tiny_trained, kv_cache=False, **opts)
    batched = new.decode_batch(speeches)
    for speech, got_batched in zip(speeches, batched):
        ref, got = old(speech), new(speech)
        assert [r[2] for r in ref] == [g[2] for g in got] == [b[2] for b in got_batched]
        assert [g[3] for g in got] == pytest.approx([r[3] for r in ref], abs=1e-4)
    texts = [r[0][0] for r in batched]
    assert len(texts) == len(speeches) == 6
    if not masked:  # not vacuous: the tiny model writes its emotion labels
        assert {t.split()[0] for t in texts} == {"em:hap", "em:sad"}


def test_unusable_audio_is_a_data_error(tiny_trained):
    decoder = s2t(tiny_trained)
    for audio, message in (
        (np.zeros(0, np.float32), "0 samples"),
        (np.zeros(150, np.float32), "150 samples"),
        (np.full(8000, np.nan, np.float32), "NaN"),
        (np.zeros((8000, 2), np.float32), "one channel"),
    ):
        with pytest.raises(DataError, match=message):
            decoder(audio)
    assert decoder(torch.zeros(8000))  # silence is fine
