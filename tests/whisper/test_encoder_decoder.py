"""Encoder/decoder: shapes, tied output layer, and ESPnet's stock parameter names."""

import pytest
import torch
import whisper
import whisper.audio
from tiny import TINY_DIMS
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.whisper.checkpoint import WhisperCheckpointError
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    enc = WhisperEncoder(whisper_dims=TINY_DIMS)
    dec = WhisperDecoder(51865, enc.output_size(), whisper_dims=TINY_DIMS)
    return enc.eval(), dec.eval()


def test_shapes(pair):
    enc, dec = pair
    speech = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 8000])
    out, olens, _ = enc(speech, lengths)
    # 1 s = 100 mel frames -> 50 encoder frames after the stride-2 convolution.
    assert out.shape == (2, 50, 32)
    assert olens.tolist() == [50, 25]
    ys = torch.randint(0, 51865, (2, 7))
    logits, ylens = dec(out, olens, ys, torch.tensor([7, 5]))
    assert logits.shape == (2, 7, 51865)
    assert ylens.tolist() == [7, 5]


def test_output_layer_is_tied_to_token_embedding(pair):
    _, dec = pair
    names = [n for n, _ in dec.named_parameters()]
    assert "decoders.token_embedding.weight" in names
    assert not any("proj" in n or "output" in n for n in names)
    mem = torch.randn(1, 10, 32)
    ys = torch.tensor([[50258, 50259]])
    before = dec(mem, None, ys, None)[0]
    with torch.no_grad():
        dec.decoders.token_embedding.weight[123].add_(1.0)
    after = dec(mem, None, ys, None)[0]
    assert not torch.equal(before[..., 123], after[..., 123])
    with torch.no_grad():
        dec.decoders.token_embedding.weight[123].sub_(1.0)


def test_score_matches_forward(pair):
    enc, dec = pair
    mem = enc(torch.randn(1, 8000), torch.tensor([8000]))[0]
    ys = torch.tensor([50258, 50259, 50364])
    logp, _ = dec.score(ys, None, mem[0])
    full = torch.log_softmax(dec(mem, None, ys[None], None)[0][0, -1], dim=-1)
    assert torch.allclose(logp, full, atol=1e-6)


def test_vocab_mismatch_is_a_clear_error():
    with pytest.raises(WhisperCheckpointError, match="token list has 1000 entries"):
        WhisperDecoder(1000, 32, whisper_dims=TINY_DIMS)


def test_names_equal_espnet_stock_whisper_classes(monkeypatch):
    """Stock ESPnet checkpoints load into ours without remapping (strict)."""
    from espnet2.asr.decoder.whisper_decoder import OpenAIWhisperDecoder
    from espnet2.asr.encoder.whisper_encoder import OpenAIWhisperEncoder

    # The stock classes need ESPnet's whisper fork and a download; give them a local
    # random model instead (this patches the reference, not the code under test).
    torch.manual_seed(1)
    ref = Whisper(ModelDimensions(**TINY_DIMS))
    torch.nn.init.normal_(ref.decoder.positional_embedding, std=0.01)
    monkeypatch.setattr(whisper.audio, "N_MELS", 80, raising=False)
    monkeypatch.setattr(whisper, "load_model", lambda *a, **k: ref)
    stock_enc = OpenAIWhisperEncoder(whisper_model="tiny").eval()
    stock_dec = OpenAIWhisperDecoder(51865, 32, whisper_model="tiny").eval()

    enc = WhisperEncoder(whisper_dims=TINY_DIMS).eval()
    dec = WhisperDecoder(51865, 32, whisper_dims=TINY_DIMS).eval()
    for stock, ours in ((stock_enc, enc), (stock_dec, dec)):
        s_sd, o_sd = stock.state_dict(), ours.state_dict()
        assert list(s_sd) == list(o_sd)
        assert all(s_sd[k].shape == o_sd[k].shape for k in s_sd)
        ours.load_state_dict(s_sd, strict=True)

    speech = torch.randn(1, 12000)
    lengths = torch.tensor([12000])
    s_out, s_len, _ = stock_enc(speech, lengths)
    o_out, o_len, _ = enc(speech, lengths)
    assert torch.allclose(s_out, o_out, atol=1e-5) and torch.equal(s_len, o_len)
    ys = torch.tensor([[50258, 50259, 50359, 50363]])
    s_logits = stock_dec(s_out, s_len, ys, torch.tensor([4]))[0]
    o_logits = dec(o_out, o_len, ys, torch.tensor([4]))[0]
    assert torch.allclose(s_logits, o_logits, atol=1e-4)
