"""Cached beam-search scoring = the full-prefix scorer; Whisper's text context bounds it."""

import pytest
import torch
from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
from espnet2.legacy.nets.scorers.length_bonus import LengthBonus
from tiny import TINY_DIMS
from torch.nn.utils.rnn import pad_sequence

from espnet_pruning.errors import InputError
from espnet_pruning.whisper.beam_search import WhisperBeamSearch
from espnet_pruning.whisper.decoder import FullPrefixScorer, WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder

PRIMER = [50258, 50259, 50359, 50363]  # <|startoftranscript|> <|en|> <|transcribe|> …
EOS = 50257


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    enc = WhisperEncoder(whisper_dims=TINY_DIMS).eval()
    dec = WhisperDecoder(51865, 32, whisper_dims=TINY_DIMS).eval()
    with torch.no_grad():
        # Smaller embeddings: the random model then spreads its probability over
        # several tokens instead of copying its input token with probability 1.
        dec.decoders.token_embedding.weight.mul_(0.5)
        memories = [
            enc(torch.randn(1, n), torch.tensor([n]))[0][0] for n in (8000, 12800, 4000)
        ]
    return dec, memories


def search(scorer, beam, cls=BatchBeamSearch, **kwargs):
    return cls(
        scorers=dict(decoder=scorer, length_bonus=LengthBonus(51865)),
        weights=dict(decoder=1.0, length_bonus=0.5),
        beam_size=beam,
        vocab_size=51865,
        sos=PRIMER[0],
        eos=EOS,
        token_list=None,
        pre_beam_score_key="full",
        hyp_primer=PRIMER,
        **kwargs,
    ).eval()


def assert_same(ref, got):
    assert [h.yseq.tolist() for h in ref] == [h.yseq.tolist() for h in got]
    for r, g in zip(ref, got):
        assert float(g.score) == pytest.approx(float(r.score), abs=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
@torch.no_grad()
def test_cached_scoring_equals_full_prefix(model, beam):
    dec, memories = model
    for x in memories:
        ref = search(FullPrefixScorer(dec), beam)(x, maxlenratio=-12)
        got = search(dec, beam)(x, maxlenratio=-12)
        assert len(ref) == beam and len(set(ref[0].yseq.tolist()[4:])) > 1
        assert_same(ref, got)


@pytest.mark.parametrize("beam", [1, 4])
@torch.no_grad()
def test_batch_of_utterances_equals_one_by_one(model, beam):
    """Padded encoder frames are never attended to: each utterance decodes as alone."""
    dec, memories = model
    lengths = torch.tensor([m.size(0) for m in memories])
    batched = search(dec, beam)(
        pad_sequence(memories, batch_first=True), maxlenratio=-12, x_lengths=lengths
    )
    for x, got in zip(memories, batched):
        assert_same(search(FullPrefixScorer(dec), beam)(x, maxlenratio=-12), got)


def test_score_keeps_a_state_per_prefix(model):
    """The non-batch interface (ESPnet's BeamSearch) gets the same log-probabilities."""
    dec, memories = model
    x = memories[0]
    ys = torch.tensor(PRIMER + [123])
    with torch.no_grad():
        logp, state = dec.score(ys[:-1], dec.init_state(x), x)
        logp2, _ = dec.score(ys, state, x)
        ref, _ = FullPrefixScorer(dec).score(ys, None, x)
    assert torch.allclose(logp2, ref, atol=1e-5)
    assert state.cache.kv[0].shape == (1, 4, 32)


@pytest.fixture(scope="module")
def looping():
    """A decoder that always predicts token 220 and never ends."""
    torch.manual_seed(0)
    dec = WhisperDecoder(51865, 32, whisper_dims=TINY_DIMS).eval()
    with torch.no_grad():
        dec.decoders.ln.weight.zero_()
        dec.decoders.ln.bias.copy_(dec.decoders.token_embedding.weight[220] * 10)
    return dec


@pytest.mark.parametrize("maxlenratio", [0.0, -1000.0])
@pytest.mark.parametrize("beam", [1, 3])
@torch.no_grad()
def test_a_looping_hypothesis_ends_at_the_text_context(looping, beam, maxlenratio):
    n_ctx = TINY_DIMS["n_text_ctx"]
    x = torch.randn(1500, 32)  # 30 s: the encoder length is far beyond the context
    bs = search(looping, beam, cls=WhisperBeamSearch, n_text_ctx=n_ctx)
    hyps = bs(x, maxlenratio=maxlenratio)
    assert len(hyps) >= 1
    best = hyps[0].yseq.tolist()
    # primer + (n_ctx - primer) tokens, then <|endoftext|> appended at the bound
    assert len(best) == n_ctx + 1 and best[-1] == EOS
    assert set(best[len(PRIMER) : -1]) == {220}
    assert float(hyps[0].score) > -1.0  # scored: each step had probability ~1

    # Without the bound the same search runs past Whisper's positional embedding.
    with pytest.raises(ValueError, match="exceeds Whisper's text context"):
        search(looping, beam)(x, maxlenratio=maxlenratio)


def test_a_primer_longer_than_the_context_is_a_clear_error(looping):
    with pytest.raises(InputError, match="leaves no room"):
        search(looping, 1, cls=WhisperBeamSearch, n_text_ctx=4)
