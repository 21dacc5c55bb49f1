"""Real speech for tests: the AN4 recordings inside the espnet source distribution that
``make -C tools`` fetches (``egs2/mini_an4/asr1/downloads.tar.gz``, NIST sphere, 16 kHz).
"""

import io
import tarfile
from pathlib import Path

import soundfile

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SDIST = TOOLS / "downloads" / "espnet-202611.tar.gz"
AN4 = "espnet-202611/egs2/mini_an4/asr1/downloads.tar.gz"


def an4_recordings():
    """The AN4 ``.sph`` recordings of the espnet sdist as float32 arrays, by file name."""
    with tarfile.open(SDIST) as sdist:
        inner = sdist.extractfile(AN4).read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(inner)) as an4:
        for member in sorted(an4.getmembers(), key=lambda m: m.name):
            if member.name.endswith(".sph"):
                data = an4.extractfile(member).read()
                audio, rate = soundfile.read(io.BytesIO(data), dtype="float32")
                assert rate == 16000
                out[Path(member.name).name] = audio
    return out
