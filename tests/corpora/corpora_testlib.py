"""Helpers of the real-corpus preparation tests: tiny audio, running a CLI, checking dirs."""

import subprocess
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pytest
import soundfile as sf

from espnet_pruning.corpora.kaldi import validate_data_dir

ESPNET_UTILS = Path(__file__).parents[2] / "tools/espnet/egs2/TEMPLATE/asr1/utils"


def write_audio(path: Path, n: int = 800, rate: int = 16000, fmt: str = "WAV") -> Path:
    """A short 16-bit tone (WAV or FLAC) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / rate
    x = (0.2 * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
    sf.write(str(path), x, rate, format=fmt, subtype="PCM_16")
    return path


def write_text(path: Path, text: str) -> Path:
    """``text`` at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(main: Callable[[Optional[Sequence[str]]], None], *args: str) -> int:
    """Run a module's ``main`` in-process; its exit status (0 when it returns)."""
    try:
        main(list(args))
    except SystemExit as e:
        return 0 if e.code is None else int(e.code) if isinstance(e.code, int) else 1
    return 0


def table(data_dir: Path, name: str) -> Dict[str, str]:
    """``<key> <value>`` lines of a data directory file as a dict."""
    out = {}
    for line in (data_dir / name).read_text().splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def check_dir(data_dir: Path, n: int, prompt: str, task: str) -> Dict[str, str]:
    """Validate ``data_dir`` with ours and ESPnet's checker; returns its ``text``."""
    assert validate_data_dir(data_dir) == n
    if (ESPNET_UTILS / "validate_data_dir.sh").is_file():
        proc = subprocess.run(
            ["utils/validate_data_dir.sh", "--no-feats", str(data_dir.absolute())],
            cwd=ESPNET_UTILS.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(table(data_dir, "prompt").values()) == {prompt}
    assert set(table(data_dir, "utt2category").values()) == {task}
    return table(data_dir, "text")


def expect_error(
    capsys,
    main: Callable,
    args: Sequence[str],
    out_dir: Path,
    *fragments: str,
) -> str:
    """Run a failing preparation: exit status 1, one ``ERROR:`` line naming every
    fragment, and no data directory (or temporary) left in ``out_dir``."""
    capsys.readouterr()
    assert run_cli(main, *args) == 1
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("ERROR: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    if out_dir.exists():
        assert list(out_dir.iterdir()) == [], list(out_dir.iterdir())
    return lines[0]


def corrupt(path: Path) -> Path:
    """Overwrite an audio file with bytes no decoder accepts."""
    path.write_bytes(b"this is not audio at all" * 4)
    return path


skip_without_espnet = pytest.mark.skipif(
    not (ESPNET_UTILS / "validate_data_dir.sh").is_file(),
    reason="ESPnet's utils/validate_data_dir.sh not installed",
)
