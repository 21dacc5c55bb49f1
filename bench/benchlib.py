"""Helpers shared by the bench scripts: Whisper-sized tensors and peak-memory probes.

Peak extra memory is measured from the kernel's own counters of this process
(``/proc/self/status``; psutil is not needed): before a measured call the peak
resident set (``VmHWM``) is reset by writing ``5`` to ``/proc/self/clear_refs``, and
afterwards ``VmHWM - VmRSS(before)`` is the peak extra resident memory of the call
(freed heap pages are first returned to the system with ``malloc_trim`` so that their
reuse is counted). If
the reset is not permitted, a background thread samples ``VmRSS`` every 2 ms instead
(which can miss very short peaks); the printed method says which one was used.
"""

import ctypes
import gc
import threading
import time
from typing import Callable, Dict, Tuple

import torch

#: Whisper sizes: d_model, layers per stack, FFN width (vocabulary 51865, 80 mels).
SIZES = {
    "tiny": (384, 4, 1536),
    "base": (512, 6, 2048),
    "small": (768, 12, 3072),
    "medium": (1024, 24, 4096),
}
N_VOCAB = 51865

#: openai-whisper ``ModelDimensions`` of Whisper tiny (for random models of its size).
TINY_DIMS = dict(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=384,
    n_audio_head=6,
    n_audio_layer=4,
    n_vocab=N_VOCAB,
    n_text_ctx=448,
    n_text_state=384,
    n_text_head=6,
    n_text_layer=4,
)


def whisper_or_random(path):
    """(openai-whisper model in fp32, description): the checkpoint at ``path`` if it
    exists, else a random model of Whisper tiny's dimensions."""
    import whisper
    from whisper.model import ModelDimensions, Whisper

    from espnet_pruning.whisper.checkpoint import init_whisper_parameters

    if path.is_file():
        model = whisper.load_model(str(path), device="cpu")
        return model.float().eval(), f"Whisper {path.name}"
    model = init_whisper_parameters(Whisper(ModelDimensions(**TINY_DIMS)), seed=0)
    return model.float().eval(), "random model of Whisper tiny's dimensions"


def whisper_shapes(size: str, embedding: bool = False) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of Whisper's Linear/Conv weights (+ the token embedding)."""
    d, layers, ffn = SIZES[size]
    shapes = {"encoder.conv1.weight": (d, 80, 3), "encoder.conv2.weight": (d, d, 3)}
    for i in range(layers):
        for stack, attns in (
            ("encoder", ("attn",)),
            ("decoder", ("attn", "cross_attn")),
        ):
            for attn in attns:
                for proj in ("query", "key", "value", "out"):
                    shapes[f"{stack}.blocks.{i}.{attn}.{proj}.weight"] = (d, d)
            shapes[f"{stack}.blocks.{i}.mlp.0.weight"] = (ffn, d)
            shapes[f"{stack}.blocks.{i}.mlp.2.weight"] = (d, ffn)
    if embedding:
        shapes["decoder.token_embedding.weight"] = (N_VOCAB, d)
    return shapes


def fp16_valued_weights(shapes: Dict[str, Tuple[int, ...]], seed: int = 0):
    """N(0, 0.02²) fp32 tensors holding fp16-representable values (as real checkpoints)."""
    g = torch.Generator().manual_seed(seed)
    return {
        n: (torch.randn(s, generator=g) * 0.02).half().float()
        for n, s in shapes.items()
    }


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], object]) -> Tuple[object, float, int, str]:
    """Run ``fn``; returns (result, seconds, peak extra resident bytes, method)."""
    gc.collect()
    try:  # hand freed heap pages back, so that reusing them is not missed as "extra"
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    before = _status("VmRSS")
    exact = _reset_peak()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _status("VmRSS"))
            time.sleep(0.002)

    sampler = None if exact else threading.Thread(target=sample, daemon=True)
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    if sampler:
        stop.set()
        sampler.join()
        top = max(peak[0], _status("VmRSS"))
    else:
        top = _status("VmHWM")
    return result, seconds, top - before, "VmHWM reset" if exact else "VmRSS sampling"


def gb(n: int) -> str:
    return f"{n / 2**30:.3f} GB"


def _step_dims(d_model: int, layers: int, heads: int) -> dict:
    # 5 s of audio (250 encoder frames), the real 51865-token vocabulary.
    return dict(
        n_mels=80,
        n_audio_ctx=250,
        n_audio_state=d_model,
        n_audio_head=heads,
        n_audio_layer=layers,
        n_vocab=N_VOCAB,
        n_text_ctx=448,
        n_text_state=d_model,
        n_text_head=heads,
        n_text_layer=layers,
    )


#: openai-whisper ``ModelDimensions`` for training-step benchmarks on 5 s utterances:
#: a 2+2-layer width-64 model, and Whisper small's and medium's widths and depths.
DIMS = {
    "tiny": _step_dims(64, 2, 2),
    "small": _step_dims(768, 12, 12),
    "medium": _step_dims(1024, 24, 16),
}


def build_whisper(dims: str, seed: int = 0):
    """A random openai-whisper model of ``DIMS[dims]`` (positional embedding drawn too)."""
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**DIMS[dims]))
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    return model


def random_masks(shapes, sparsity: float, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Bool masks pruning ``sparsity`` of every tensor at random (1 = kept)."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=g) >= sparsity for n, s in shapes.items()}


def training_batch(dims, batch: int, text_len: int = 24, seed: int = 1):
    """(mel, input tokens, targets) of ``batch`` random 5 s utterances."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(batch, dims.n_mels, 2 * dims.n_audio_ctx, generator=g)
    tokens = torch.randint(0, dims.n_vocab, (batch, text_len), generator=g)
    targets = torch.randint(0, dims.n_vocab, (batch, text_len), generator=g)
    return mel, tokens, targets


def whisper_step(model, opt, data, forward=None) -> float:
    """One training step (zero_grad, forward, backward, clipping, step); seconds.

    ``forward(mel, tokens)`` replaces ``model(mel, tokens)`` (e.g. a masked call).
    """
    mel, tokens, targets = data
    if mel.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    logits = (forward or model)(mel, tokens)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if mel.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
