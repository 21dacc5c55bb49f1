"""espeak-ng wrapper: text to 16 kHz int16 speech with a given voice and prosody.

espeak-ng (Debian package ``espeak-ng``) is a formant synthesiser: fast (tens of short
utterances per second per core), deterministic (the same command gives the same bytes), with
many English voices (``en-us``, ``en-gb-scotland``, ...) and variants (``+m3``, ``+f2``,
``+klatt``, ``+whisper``). It writes 22.05 kHz WAV, which :meth:`Espeak.render` resamples to
16 kHz with soxr.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from typing import FrozenSet, Optional
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from typeguard import typechecked

from espnet_pruning.corpora.audio import SAMPLE_RATE, resample, to_int16

DEBIAN_PACKAGE = "espeak-ng"
_RANGES = ("x-low", "low", "medium", "high", "x-high")


class TTSError(RuntimeError):
    """espeak-ng failed to synthesise an utterance."""


class EspeakNotFoundError(TTSError):
    """The espeak-ng binary is missing or does not run."""


@dataclasses.dataclass(frozen=True)
class Prosody:
    """espeak-ng rendering parameters of one utterance.

    Attributes:
        voice: ``-v`` voice with variant, e.g. ``en-us+f3``.
        speed: Words per minute (``-s``, 80-450).
        pitch: Base pitch (``-p``, 0-99).
        amplitude: Amplitude (``-a``, 0-200).
        range: SSML ``<prosody range>`` (pitch excursion), e.g. ``x-high``; ``None``: default.
    """

    voice: str
    speed: int = 160
    pitch: int = 50
    amplitude: int = 100
    range: Optional[str] = None

    def __post_init__(self):
        if not re.match(r"^[A-Za-z0-9-]+(\+[A-Za-z0-9_-]+)?$", self.voice):
            raise ValueError(f"invalid espeak voice {self.voice!r}")
        if not (80 <= self.speed <= 450 and 0 <= self.pitch <= 99):
            raise ValueError(f"speed/pitch out of range: {self}")
        if not 0 <= self.amplitude <= 200:
            raise ValueError(f"amplitude out of range: {self}")
        if self.range is not None and self.range not in _RANGES:
            raise ValueError(f"prosody range must be one of {_RANGES}: {self.range!r}")


@typechecked
def find_espeak(binary: Optional[str] = None) -> str:
    """Locate a working espeak-ng binary.

    Args:
        binary: A path or command name; default: ``$ESPEAK_NG`` or ``espeak-ng`` on PATH.

    Returns:
        The absolute path of the binary.

    Raises:
        EspeakNotFoundError: Naming the binary and the Debian package to install.
    """
    name = binary or os.environ.get("ESPEAK_NG") or "espeak-ng"
    path = shutil.which(name)
    hint = (
        f"install the Debian package '{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE})"
        " or pass the binary's path (--espeak / $ESPEAK_NG)"
    )
    if path is None:
        raise EspeakNotFoundError(f"espeak-ng binary {name!r} not found; {hint}")
    try:
        proc = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30
        )
    except OSError as e:
        raise EspeakNotFoundError(
            f"espeak-ng binary {path!r} does not run ({e}); {hint}"
        )
    if proc.returncode != 0 or "espeak" not in proc.stdout.lower():
        raise EspeakNotFoundError(
            f"{path!r} --version failed (rc {proc.returncode}): "
            f"{(proc.stdout + proc.stderr).strip()[:200]}; {hint}"
        )
    return os.path.abspath(path)


class Espeak:
    """Synthesise speech with espeak-ng.

    Args:
        binary: espeak-ng binary (see :func:`find_espeak`).
    """

    @typechecked
    def __init__(self, binary: Optional[str] = None):
        self.binary = find_espeak(binary)
        out = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
        m = re.search(r"text-to-speech:\s*(\S+)", out)
        #: Version string, e.g. ``1.51`` (part of the generation parameters).
        self.version = m.group(1) if m else out.strip().split("\n")[0]

    def variants(self) -> FrozenSet[str]:
        """Names usable after ``+`` in a voice (the files of espeak-ng's ``!v`` folder)."""
        out = subprocess.run(
            [self.binary, "--voices=variant"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return frozenset(re.findall(r"!v/(\S+)", out))

    def voices(self) -> FrozenSet[str]:
        """Language voice names (``en-us``, ``en-gb-scotland``, ...)."""
        out = subprocess.run(
            [self.binary, "--voices"], capture_output=True, text=True, check=True
        ).stdout
        return frozenset(
            line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1
        )

    @typechecked
    def synthesize(self, text: str, prosody: Prosody) -> tuple:
        """Run espeak-ng once.

        Args:
            text: Plain text (XML-escaped here; it is passed as SSML on stdin).
            prosody: Voice and prosody.

        Returns:
            ``(samples, rate)``: float64 samples in [-1, 1] and espeak's rate (22050).

        Raises:
            TTSError: With espeak's message, if it fails or writes no audio.
        """
        body = escape(text)
        if prosody.range is not None:
            body = f'<prosody range="{prosody.range}">{body}</prosody>'
        ssml = f"<speak>{body}</speak>"
        fd, tmp = tempfile.mkstemp(prefix="espeak-", suffix=".wav")
        os.close(fd)
        try:
            cmd = [
                self.binary,
                "--stdin",
                "-m",
                "-v",
                prosody.voice,
                "-s",
                str(prosody.speed),
                "-p",
                str(prosody.pitch),
                "-a",
                str(prosody.amplitude),
                "-w",
                tmp,
            ]
            proc = subprocess.run(cmd, input=ssml, capture_output=True, text=True)
            if proc.returncode != 0 or os.path.getsize(tmp) <= 44:
                raise TTSError(
                    f"espeak-ng failed for {text!r} with {prosody} "
                    f"(rc {proc.returncode}): {proc.stderr.strip()[:300]}"
                )
            x, rate = sf.read(tmp, dtype="float64")
        finally:
            os.unlink(tmp)
        if x.ndim != 1 or len(x) == 0:
            raise TTSError(f"espeak-ng wrote no mono audio for {text!r} with {prosody}")
        return x, rate

    @typechecked
    def render(
        self, text: str, prosody: Prosody, rate: int = SAMPLE_RATE
    ) -> np.ndarray:
        """Synthesise ``text`` and return int16 samples at ``rate`` (16 kHz)."""
        x, rate_in = self.synthesize(text, prosody)
        return to_int16(resample(x, rate_in, rate))
