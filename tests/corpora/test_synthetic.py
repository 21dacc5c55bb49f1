import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_pruning.corpora import synthetic
from espnet_pruning.corpora.audio import rms
from espnet_pruning.corpora.kaldi import validate_data_dir
from espnet_pruning.corpora.synthetic import (
    DONE_MARKER,
    OutputDirError,
    ParameterMismatchError,
    generate,
)
from espnet_pruning.corpora.templates import PROMPTS, TASKS, Templates
from espnet_pruning.corpora.tts import EspeakNotFoundError

SETS = (
    ["train", "valid"]
    + [f"test_{t}" for t in TASKS]
    + ["train_cl_asr", "valid_cl_asr", "train_cl_ic", "valid_cl_ic"]
)
FILES = (
    "wav.scp",
    "text",
    "utt2spk",
    "spk2utt",
    "prompt",
    "utt2category",
    "utt2num_samples",
)
TEXT = {
    "er_iemocap": r"^em:(neu|hap|sad|ang) SEP [a-z' ]+$",
    "ic_slurp": r"^[a-z]+_[a-z_]+ SEP [a-z' ]+$",
    "asr_librispeech": r"^[A-Z']+( [A-Z']+)*$",
    "ic_fsc": r"^in:[a-z_]+_[a-z]+_(none|kitchen|bedroom|washroom) SEP [a-z' ]+$",
    "ic_snips": r"^[A-Z]+ SEP [a-z' ]+$",
    "ner_slurp": r"^(<entity:[a-z_]+> <FILL> [a-z' ]+ <SEP> )*[a-z' ]+$",
    "scr_speechcommands": r"^command:[a-z_]+$",
}


#: Tiny sizes: 2 per task and set (4 in train, so ER and SCR show several classes).
TINY = dict(n_train=4, n_valid=2, n_test=2, n_cl=2)


def _cli(out_dir: Path, wav_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "espnet_pruning.corpora.synthetic"]
    cmd += ["--out_dir", str(out_dir), "--wav_dir", str(wav_dir), "--seed", "0"]
    for k, v in TINY.items():
        cmd += [f"--{k}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        cmd + ["--no_progress", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def corpus_cli(tmp_path_factory) -> Path:
    """Tiny corpus written by the CLI; returns the root holding ``data`` and ``wavs``."""
    root = tmp_path_factory.mktemp("corpus_cli")
    proc = _cli(root / "data", root / "wavs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def corpus_api(tmp_path_factory) -> Path:
    """The same tiny corpus written by :func:`generate` into other directories."""
    root = tmp_path_factory.mktemp("corpus_api")
    generate(root / "data", root / "wavs", seed=0, nj=2, progress=False, **TINY)
    return root


@pytest.fixture()
def tiny() -> dict:
    """The tiny generation sizes."""
    return dict(TINY)


@pytest.fixture()
def run_cli():
    """The CLI runner (tiny sizes, seed 0)."""
    return _cli


def table(d: Path, name: str) -> dict:
    return dict(line.split(" ", 1) for line in (d / name).read_text().splitlines())


def speakers_of(data: Path, names) -> set:
    return {s for n in names for s in table(data / n, "utt2spk").values()}


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(root: Path) -> dict:
    """Every data file (wav paths made relative) and every WAV's hash."""
    out = {}
    for s in SETS:
        for f in FILES:
            text = (root / "data" / s / f).read_text()
            out[f"{s}/{f}"] = text.replace(str(root / "wavs"), "WAVS")
    for p in sorted((root / "wavs").rglob("*.wav")):
        out[str(p.relative_to(root))] = sha(p)
    for f in ("labels.json", "speakers.json"):
        out[f] = (root / "data" / f).read_text()
    return out


def test_layout_and_validity(corpus_cli):
    data = corpus_cli / "data"
    for s in SETS:
        assert validate_data_dir(data / s) > 0
        for f in FILES:
            assert (data / s / f).is_file()
    for f in ("speakers.json", "labels.json", "corpus.json", DONE_MARKER):
        assert (data / f).is_file()
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == sorted(SETS)


def test_tasks_prompts_texts_ids(corpus_cli, tiny):
    data = corpus_cli / "data"
    all_ids = []
    for s in SETS:
        d = data / s
        text, cat, prompt = (
            table(d, "text"),
            table(d, "utt2category"),
            table(d, "prompt"),
        )
        utt2spk, wav = table(d, "utt2spk"), table(d, "wav.scp")
        for utt, task in cat.items():
            m = re.match(r"^(spk\d\d)-([a-z_]+)-(\d{5})$", utt)
            assert m and m.group(1) == utt2spk[utt] and m.group(2) == task, utt
            assert prompt[utt] == PROMPTS[task]
            assert re.match(TEXT[task], text[utt]), (utt, text[utt])
            assert Path(wav[utt]).is_absolute() and wav[utt].endswith(f"/{utt}.wav")
        all_ids += list(cat)
        tasks = set(cat.values())
        if s in ("train", "valid"):
            assert tasks == set(TASKS)
        elif s.startswith("test_"):
            assert tasks == {s[5:]}
        elif s.endswith("cl_asr"):
            assert tasks == {"asr_librispeech"}
        else:
            assert tasks == {"ic_slurp"}
    assert len(all_ids) == len(set(all_ids))  # unique over the whole corpus
    train = table(data / "train", "utt2category")
    assert [list(train.values()).count(t) for t in TASKS] == [tiny["n_train"]] * 7
    assert len(table(data / "train_cl_asr", "text")) == tiny["n_cl"]


def test_speaker_pools(corpus_cli):
    data = corpus_cli / "data"
    seen = speakers_of(data, ["train", "valid"])
    test = speakers_of(data, [s for s in SETS if s.startswith("test_")])
    cl_asr = speakers_of(data, ["train_cl_asr", "valid_cl_asr"])
    cl_ic = speakers_of(data, ["train_cl_ic", "valid_cl_ic"])
    assert test and not test & seen
    assert cl_asr and not cl_asr & seen and not cl_ic & seen
    info = json.loads((data / "speakers.json").read_text())
    assert (seen | test | cl_asr | cl_ic) <= set(info)
    voice = {k: v.get("espeak_voice", f"noise:{k}") for k, v in info.items()}
    # Test voices (voice+variant) never occur in training; CL-IC uses another style.
    assert not {voice[s] for s in test} & {voice[s] for s in seen}
    assert all(info[s]["pool"] == "cl_ic" for s in cl_ic)
    variants = {info[s]["variant"] for s in cl_ic}
    assert variants & {"klatt", "klatt3", "whisper", "whisperf", "croak"}
    assert all(info[s]["sets"] for s in seen | test)


def test_cl_asr_sentences_are_new(corpus_cli):
    data = corpus_cli / "data"
    asr = lambda s: {t for u, t in table(data / s, "text").items() if "-asr_" in u}
    assert not asr("train_cl_asr") & (asr("train") | asr("valid"))
    assert not asr("test_asr_librispeech") & asr("train")


def test_labels_and_summary(corpus_cli):
    data = corpus_cli / "data"
    labels = json.loads((data / "labels.json").read_text())
    assert labels == Templates().labels()
    for s in SETS:
        for utt, text in table(data / s, "text").items():
            task = table(data / s, "utt2category")[utt]
            if labels[task] and task != "ner_slurp":
                assert text.split()[0] in labels[task]
    summary = json.loads((data / "corpus.json").read_text())
    assert summary["params"]["seed"] == 0
    for s in SETS:
        cats = list(table(data / s, "utt2category").values())
        assert summary["sets"][s]["num_utterances"] == len(cats)
        assert summary["sets"][s]["tasks"] == {t: cats.count(t) for t in set(cats)}


def test_audio_properties(corpus_cli):
    data = corpus_cli / "data"
    wav = {}
    text = {}
    for s in SETS:
        wav.update(table(data / s, "wav.scp"))
        text.update(table(data / s, "text"))
    silence = [u for u, t in text.items() if t == "command:_silence_"]
    assert silence
    for utt, path in wav.items():
        x, rate = sf.read(path, dtype="int16")
        assert rate == 16000 and x.ndim == 1
        if utt in silence:
            assert rms(x) < 0.01 and np.abs(x).max() < 0.1 * 32768
        else:
            assert rms(x) > 0.02, utt
        if "-scr_" in utt:
            assert len(x) >= 16000


def test_deterministic(corpus_cli, corpus_api):
    a, b = snapshot(corpus_cli), snapshot(corpus_api)
    assert a.keys() == b.keys()
    assert a == b


def test_finished_run_is_skipped(corpus_cli, run_cli, monkeypatch):
    data = corpus_cli / "data"
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    t0 = time.time()
    proc = run_cli(data, corpus_cli / "wavs")
    assert proc.returncode == 0 and "skipping" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before
    assert time.time() - t0 < 30


def test_resume_after_interruption(corpus_api, tmp_path, monkeypatch, tiny):
    calls = []
    real = synthetic.write_wav

    def crashing(path, samples, rate=16000):
        if len(calls) == 10:
            raise KeyboardInterrupt("simulated kill")
        calls.append(path)
        real(path, samples, rate)

    out, wavs = tmp_path / "data", tmp_path / "wavs"
    monkeypatch.setattr(synthetic, "write_wav", crashing)
    with pytest.raises(KeyboardInterrupt):
        generate(out, wavs, nj=1, progress=False, **tiny)
    assert not (out / DONE_MARKER).exists() and not (out / "train").exists()
    assert len(list(wavs.rglob("*.wav"))) == 10
    # Damage one finished WAV and leave a stale temporary behind: both are handled.
    first = sorted(wavs.rglob("*.wav"))[0]
    first.write_bytes(first.read_bytes()[:100])
    (first.parent / ".tmp-stale.wav").write_bytes(b"partial")
    calls.clear()
    monkeypatch.setattr(
        synthetic, "write_wav", lambda p, s, r=16000: (calls.append(p), real(p, s, r))
    )
    generate(out, wavs, nj=1, progress=False, **tiny)
    total = len(list((corpus_api / "wavs").rglob("*.wav")))
    assert len(calls) == total - 10 + 1 and first in calls
    assert not list(wavs.rglob(".tmp-*"))
    root_a = tmp_path
    assert snapshot(root_a) == snapshot(corpus_api)


def test_parameter_mismatch_and_overwrite(corpus_api, tmp_path, tiny):
    out, wavs = tmp_path / "data", tmp_path / "wavs"
    shutil.copytree(corpus_api / "data", out)
    shutil.copytree(corpus_api / "wavs", wavs)
    # wav.scp of the copy points at corpus_api's wavs: the done marker knows another wav_dir.
    with pytest.raises(ParameterMismatchError, match=r"differing: wav_dir"):
        generate(out, wavs, progress=False, **tiny)
    with pytest.raises(ParameterMismatchError, match=r"--overwrite"):
        generate(out, wavs, seed=1, progress=False, **tiny)
    generate(out, wavs, seed=1, overwrite=True, progress=False, **tiny)
    params = json.loads((out / DONE_MARKER).read_text())
    assert params["seed"] == 1 and params["wav_dir"] == str(wavs)
    for s in SETS:
        validate_data_dir(out / s)
    assert table(out / "train", "text") != table(corpus_api / "data" / "train", "text")
    n_wavs = sum(len(table(out / s, "wav.scp")) for s in SETS)
    assert len(list(wavs.rglob("*.wav"))) == n_wavs  # old seed's WAVs were removed


def test_missing_espeak(tmp_path, run_cli, tiny):
    out = tmp_path / "data"
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        generate(out, tmp_path / "wavs", espeak="/nonexistent/espeak-ng", **tiny)
    assert not out.exists() and not (tmp_path / "wavs").exists()
    proc = run_cli(out, tmp_path / "wavs", "--espeak", "/nonexistent/espeak-ng")
    assert proc.returncode == 1 and "espeak-ng" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_unwritable_output(tmp_path, run_cli, tiny):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputDirError, match=re.escape(str(blocker / "data"))):
        generate(blocker / "data", tmp_path / "wavs", **tiny)
    with pytest.raises(OutputDirError, match=r"wav directory .*a_file/wavs"):
        generate(tmp_path / "data", blocker / "wavs", **tiny)
    proc = run_cli(blocker / "data", tmp_path / "wavs")
    assert proc.returncode == 1 and str(blocker / "data") in proc.stderr
    with pytest.raises(ValueError, match="n_test"):
        generate(tmp_path / "d", tmp_path / "w", n_test=0)


ESPNET_UTILS = Path(__file__).parents[2] / "tools/espnet/egs2/TEMPLATE/asr1/utils"


@pytest.mark.skipif(
    not (ESPNET_UTILS / "validate_data_dir.sh").is_file(),
    reason="ESPnet's utils/validate_data_dir.sh not installed under tools/espnet",
)
def test_espnet_validate_data_dir(corpus_cli):
    for s in SETS:
        proc = subprocess.run(
            ["utils/validate_data_dir.sh", "--no-feats", "--non-print"]
            + [str(corpus_cli / "data" / s)],
            cwd=ESPNET_UTILS.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
