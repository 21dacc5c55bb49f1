"""Audio helpers of the corpora: checking, atomic writing, resampling, noise.

Every WAV the synthetic corpus references is 16 kHz, mono, 16-bit PCM. :func:`check_wav` is
what the recipe uses to reject a corrupt, truncated or wrong-rate WAV with a message naming
it; :func:`check_audio_file` (used by :func:`espnet_pruning.corpora.kaldi.validate_data_dir`)
also accepts the FLAC files of the real corpora (SLURP, LibriSpeech), checked from their
header.
"""

import os
import struct
import tempfile
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import soundfile as sf
import soxr
from typeguard import typechecked

from espnet_pruning.errors import InputError

SAMPLE_RATE = 16000
_PCM = 1
_EXTENSIBLE = 0xFFFE


class WavError(InputError):
    """A WAV file is missing, unreadable, truncated or not in the expected format."""


@typechecked
def check_wav(
    path: Union[str, Path], expected_rate: int = SAMPLE_RATE, channels: int = 1
) -> int:
    """Check that ``path`` is a complete 16-bit PCM WAV with the expected rate and channels.

    The RIFF chunks are parsed directly so that a truncated file (a data chunk longer than
    what is on disk, as left by an interrupted copy) is rejected; libsndfile would silently
    read the shorter data.

    Args:
        path: The WAV file.
        expected_rate: Required sampling rate in Hz.
        channels: Required number of channels.

    Returns:
        The number of samples (frames).

    Raises:
        WavError: Naming ``path`` and what is wrong.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise WavError(f"{path}: not a RIFF/WAVE file")
            riff_size = struct.unpack("<I", head[4:8])[0]
            if riff_size + 8 > size:
                raise WavError(
                    f"{path}: truncated file (RIFF header says {riff_size + 8} bytes, "
                    f"file has {size})"
                )
            fmt: Optional[Tuple[int, int, int, int, int]] = None
            data_bytes: Optional[int] = None
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
                if pos + 8 + chunk_size > size:
                    raise WavError(
                        f"{path}: truncated file ({chunk_id!r} chunk needs "
                        f"{chunk_size} bytes, {size - pos - 8} present)"
                    )
                if chunk_id == b"fmt ":
                    if chunk_size < 16:
                        raise WavError(f"{path}: malformed fmt chunk")
                    af, nch, rate, _, align, bits = struct.unpack("<HHIIHH", f.read(16))
                    fmt = (af, nch, rate, align, bits)
                elif chunk_id == b"data":
                    data_bytes = chunk_size
                pos += 8 + chunk_size + (chunk_size & 1)
    except OSError as e:
        raise WavError(f"{path}: cannot read: {e.strerror or e}") from e
    if fmt is None or data_bytes is None:
        raise WavError(f"{path}: missing {'fmt' if fmt is None else 'data'} chunk")
    audio_format, n_channels, rate, block_align, bits = fmt
    if audio_format not in (_PCM, _EXTENSIBLE) or bits != 16:
        raise WavError(f"{path}: not 16-bit PCM (format {audio_format}, {bits} bits)")
    if rate != expected_rate:
        raise WavError(f"{path}: sampling rate {rate} Hz, expected {expected_rate} Hz")
    if n_channels != channels:
        raise WavError(f"{path}: {n_channels} channels, expected {channels}")
    if block_align != 2 * n_channels or data_bytes % block_align:
        raise WavError(f"{path}: data size {data_bytes} is not whole frames")
    frames = data_bytes // block_align
    if frames == 0:
        raise WavError(f"{path}: no audio samples")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise WavError(f"{path}: unreadable by libsndfile: {e}") from e
    if info.frames != frames:
        raise WavError(
            f"{path}: libsndfile reads {info.frames} frames, header {frames}"
        )
    return frames


@typechecked
def check_audio_file(
    path: Union[str, Path], expected_rate: int = SAMPLE_RATE, channels: int = 1
) -> int:
    """Check a WAV (:func:`check_wav`) or any other libsndfile format such as FLAC.

    Non-WAV files are checked from their header only (``soundfile.info``): readable,
    the expected rate and channels, at least one frame. That is cheap enough for the
    hundreds of thousands of files of a real corpus.

    Args:
        path: The audio file.
        expected_rate: Required sampling rate in Hz.
        channels: Required number of channels.

    Returns:
        The number of samples (frames).

    Raises:
        WavError: Naming ``path`` and what is wrong.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise WavError(f"{path}: cannot read: {e.strerror or e}") from e
    if magic == b"RIFF":
        return check_wav(path, expected_rate=expected_rate, channels=channels)
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise WavError(f"{path}: unreadable audio file: {e}") from e
    if info.samplerate != expected_rate:
        raise WavError(
            f"{path}: sampling rate {info.samplerate} Hz, expected {expected_rate} Hz"
        )
    if info.channels != channels:
        raise WavError(f"{path}: {info.channels} channels, expected {channels}")
    if info.frames <= 0:
        raise WavError(f"{path}: no audio samples")
    return int(info.frames)


@typechecked
def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write int16 mono samples atomically: a temporary file in the same folder, renamed.

    A killed process therefore never leaves a partial ``path`` (only a ``.tmp-*`` file that
    :func:`remove_stale_temporaries` cleans up).
    """
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError("write_wav expects a 1-d int16 array")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".wav", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sf.write(f, samples, rate, format="WAV", subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@typechecked
def remove_stale_temporaries(directory: Path) -> int:
    """Delete ``.tmp-*.wav`` files left under ``directory`` by an interrupted run."""
    n = 0
    if directory.is_dir():
        for p in directory.glob("*/.tmp-*.wav"):
            p.unlink()
            n += 1
    return n


@typechecked
def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 (rounded, clipped)."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


@typechecked
def resample(x: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float samples with soxr (high quality, deterministic)."""
    if rate_in == rate_out:
        return x.astype(np.float64)
    return soxr.resample(x.astype(np.float64), rate_in, rate_out, quality="HQ")


@typechecked
def pad_center(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad ``x`` on both sides to at least ``n`` samples (Speech-Commands-like clips)."""
    if len(x) >= n:
        return x
    left = (n - len(x)) // 2
    return np.concatenate(
        [np.zeros(left, x.dtype), x, np.zeros(n - len(x) - left, x.dtype)]
    )


@typechecked
def background_noise(
    rng: np.random.Generator,
    seconds: float,
    colour: str = "white",
    level_db: float = -50.0,
    hum_hz: Optional[float] = None,
    rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Low-level background noise without speech (the ``_silence_`` class).

    Args:
        rng: Random generator.
        seconds: Duration.
        colour: ``white``, ``pink`` (1/f power) or ``brown`` (1/f^2 power).
        level_db: RMS level in dB relative to full scale.
        hum_hz: Optional mains-like hum (fundamental plus two harmonics) mixed in.
        rate: Sampling rate.

    Returns:
        int16 samples.
    """
    n = int(round(seconds * rate))
    white = rng.standard_normal(n)
    if colour == "white":
        x = white
    elif colour in ("pink", "brown"):
        spec = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, 1.0 / rate)
        freqs[0] = freqs[1]
        spec /= np.sqrt(freqs) if colour == "pink" else freqs
        spec[0] = 0.0
        x = np.fft.irfft(spec, n)
    else:
        raise ValueError(f"unknown noise colour {colour!r}")
    x = x / (np.sqrt(np.mean(x**2)) + 1e-12)
    if hum_hz:
        t = np.arange(n) / rate
        phase = rng.uniform(0, 2 * np.pi)
        hum = sum(
            a * np.sin(2 * np.pi * k * hum_hz * t + k * phase)
            for k, a in ((1, 1.0), (2, 0.5), (3, 0.25))
        )
        x = x + 0.8 * hum / np.sqrt(np.mean(hum**2))
        x = x / np.sqrt(np.mean(x**2))
    return to_int16(x * 10.0 ** (level_db / 20.0))


@typechecked
def rms(x: np.ndarray) -> float:
    """Root mean square of int16 or float samples, relative to full scale."""
    y = x.astype(np.float64)
    if x.dtype == np.int16:
        y /= 32768.0
    return float(np.sqrt(np.mean(y**2))) if len(y) else 0.0
