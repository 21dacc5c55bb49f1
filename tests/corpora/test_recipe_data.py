"""local/data.sh and local/check_corpora.sh of egs2/uslu3 and egs2/uslu7 on tiny corpora."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from corpora_testlib import table
from test_fsc_prep import make_fsc
from test_iemocap_prep import make_iemocap
from test_librispeech_prep import make_librispeech
from test_slurp_prep import make_slurp
from test_snips_prep import make_snips
from test_speechcommands_prep import make_speechcommands, make_test_set

from espnet_pruning.corpora.kaldi import validate_data_dir

ROOT = Path(__file__).resolve().parents[2]
SKIP = ("data", "dump", "exp", "downloads")

pytestmark = pytest.mark.skipif(
    not (ROOT / "tools" / "espnet").is_dir(), reason="make -C tools first"
)


def scratch(tmp: Path, name: str) -> Path:
    """``tmp/egs2/<name>/slu1`` whose data/dump live in ``tmp``; files are linked."""
    recipe = tmp / "egs2" / name / "slu1"
    recipe.mkdir(parents=True)
    for item in (ROOT / "egs2" / name / "slu1").iterdir():
        if item.name not in SKIP:
            recipe.joinpath(item.name).symlink_to(
                os.readlink(item) if item.is_symlink() else item
            )
    whisper = recipe / "downloads/whisper/medium.pt"
    whisper.parent.mkdir(parents=True)
    whisper.write_bytes(b"placeholder")
    return recipe


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpora")
    return {
        "IEMOCAP": make_iemocap(d / "IEMOCAP_full_release"),
        "SLURP": make_slurp(d / "slurp"),
        "LIBRISPEECH": make_librispeech(d / "LibriSpeech"),
        "FSC": make_fsc(d / "fsc"),
        "SNIPS": make_snips(d / "smart-lights-en-close-field"),
        "SPEECHCOMMANDS": make_speechcommands(d / "speech_commands_v0.02"),
        "SPEECHCOMMANDS_TEST": make_test_set(d / "speech_commands_test_set_v0.02"),
    }


@pytest.fixture()
def recipes(tmp_path):
    (tmp_path / "egs2").mkdir()
    (tmp_path / "egs2" / "TEMPLATE").symlink_to(ROOT / "egs2" / "TEMPLATE")
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    return {name: scratch(tmp_path, name) for name in ("uslu3", "uslu7")}


def run(recipe: Path, corpora, *cmd: str, **overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env.update({k: str(v) for k, v in corpora.items()}, **overrides)
    return subprocess.run(
        list(cmd), cwd=recipe, capture_output=True, text=True, env=env, timeout=300
    )


def test_check_corpora(recipes, corpora):
    proc = run(recipes["uslu7"], corpora, "local/check_corpora.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for corpus in ("iemocap", "slurp", "librispeech", "fsc", "snips", "speechcommands"):
        assert (
            f"{corpus}: " in proc.stdout
            and f"espnet_pruning.corpora.{corpus} " in proc.stdout
        )
    assert "data/train_er_iemocap:10" in proc.stdout
    assert not (recipes["uslu7"] / "data").exists()
    # Every problem is reported, not just the first one.
    (recipes["uslu3"] / "downloads/whisper/medium.pt").unlink()
    proc = run(
        recipes["uslu3"], corpora, "local/check_corpora.sh", SLURP=str(corpora["FSC"])
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert (
        f"ERROR: {corpora['FSC']}/dataset/slurp/train.jsonl: SLURP jsonl file not found"
        in out
    )
    assert "downloads/whisper/medium.pt: Whisper checkpoint" in out
    assert "not ready: slurp whisper_checkpoint" in out
    assert "fsc" not in proc.stdout.replace(str(corpora["FSC"]), "")
    assert not (recipes["uslu3"] / "data").exists()


def test_uslu3_data(recipes, corpora):
    recipe = recipes["uslu3"]
    proc = run(recipe, corpora, "local/data.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = recipe / "data"
    train = table(data / "train", "utt2category")
    assert sorted(set(train.values())) == ["asr_librispeech", "er_iemocap", "ic_slurp"]
    counts = {t: list(train.values()).count(t) for t in set(train.values())}
    assert counts == {"er_iemocap": 4 * 10, "ic_slurp": 3, "asr_librispeech": 2}
    assert validate_data_dir(data / "train") == 45
    assert validate_data_dir(data / "valid") == 1 + 1 + 2
    for s in ("test_er_iemocap", "test_ic_slurp", "test_asr_librispeech"):
        assert validate_data_dir(data / s) > 0
    for s in ("train_cl_asr", "valid_cl_asr", "train_cl_ic_mix", "valid_cl_ic"):
        assert validate_data_dir(data / s) > 0
    assert not (data / "train_ner_slurp").exists()
    # A rerun skips the prepared corpora and rebuilds only the combined sets.
    proc = run(recipe, corpora, "local/data.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("prepared with the same command, skipped") == 3
    # ... unless one of its data dirs has gone.
    shutil.rmtree(data / "test_ic_slurp")
    proc = run(recipe, corpora, "local/data.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("prepared with the same command, skipped") == 2
    assert validate_data_dir(data / "test_ic_slurp") == 1


def test_uslu7_data_without_continual_sets(recipes, corpora):
    recipe = recipes["uslu7"]
    opts = ["--continual", "false", "--skip_audio_check", "true"]
    opts += ["--snips_opts", "--n_valid 1 --n_test 1"]
    proc = run(recipe, corpora, "local/data.sh", *opts)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = recipe / "data"
    tasks = set(table(data / "train", "utt2category").values())
    assert len(tasks) == 7
    assert not (data / "train_cl_asr").exists() and not (data / "train_cl_ic").exists()
    assert validate_data_dir(data / "test_scr_speechcommands") == 3
    clips = sorted((recipe / "dump/speechcommands_silence").glob("*/*.wav"))
    assert len(clips) == 3 + 1
