"""Tiny models shared by the pruning tests."""

from typing import Dict

import torch
from torch import nn
from whisper.model import ModelDimensions, Whisper

TINY_WHISPER = dict(
    n_mels=80,
    n_audio_ctx=8,
    n_audio_state=16,
    n_audio_head=2,
    n_audio_layer=2,
    n_vocab=40,
    n_text_ctx=6,
    n_text_state=16,
    n_text_head=2,
    n_text_layer=2,
)


def tiny_whisper(seed: int = 0, **dims) -> Whisper:
    """A randomly initialised 2+2-layer, 16-wide openai-whisper model."""
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**{**TINY_WHISPER, **dims}))
    with torch.no_grad():
        # Whisper leaves the decoder positional embedding uninitialised (torch.empty).
        model.decoder.positional_embedding.normal_(0.0, 0.02)
        # Non-trivial biases and LayerNorm parameters.
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def whisper_batch(model: Whisper, batch: int = 2, seed: int = 1):
    """(mel, tokens, targets) for a tiny Whisper."""
    dims = model.dims
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, dims.n_mels, 2 * dims.n_audio_ctx, generator=g)
    tokens = torch.randint(0, dims.n_vocab, (batch, dims.n_text_ctx), generator=g)
    targets = torch.randint(0, dims.n_vocab, (batch, dims.n_text_ctx), generator=g)
    return mel, tokens, targets


def whisper_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


class TwoLayer(nn.Module):
    """Linear → LayerNorm → Linear with a bare positional parameter."""

    def __init__(self, d_in: int = 5, d_hidden: int = 7, d_out: int = 3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.norm = nn.LayerNorm(d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)
        self.positional_embedding = nn.Parameter(torch.randn(d_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.norm(self.fc1(x) + self.positional_embedding).relu())


def random_mask(params: Dict[str, torch.Tensor], p: float, seed: int = 0):
    """Bernoulli(1 - p) bool masks of the shapes of ``params``."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(t.shape, generator=g) >= p for n, t in params.items()}
