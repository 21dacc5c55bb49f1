from pathlib import Path

import pytest
import soundfile as sf
from corpora_testlib import (
    check_dir,
    corrupt,
    expect_error,
    run_cli,
    table,
    write_audio,
    write_text,
)

from espnet_pruning.corpora.speechcommands import main

PROMPT = "<|en|> <|scr|> <|google_scr|>"
TASK = "scr_speechcommands"
WORDS = {
    "yes": ["0a7c2a8d_nohash_0", "0a7c2a8d_nohash_1", "1b2c3d4e_nohash_0"],
    "stop": ["5e6f7a8b_nohash_0"],
    "cat": ["0a7c2a8d_nohash_0", "9c9c9c9c_nohash_0", "aa11bb22_nohash_0"],
    "marvin": ["cc33dd44_nohash_0", "ee55ff66_nohash_0"],
}
VALID = ["yes/1b2c3d4e_nohash_0.wav", "marvin/cc33dd44_nohash_0.wav"]
TEST = ["stop/5e6f7a8b_nohash_0.wav", "cat/aa11bb22_nohash_0.wav"]
NOISE_SAMPLES = {"running_tap": 16000 + 2 * 1777, "white_noise": 16000 + 1777 - 1}


def make_speechcommands(root: Path) -> Path:
    """A tiny speech_commands_v0.02 (1 s clips, lists, background noise)."""
    for word, stems in WORDS.items():
        for stem in stems:
            write_audio(root / word / f"{stem}.wav", n=16000)
    write_text(root / "validation_list.txt", "".join(x + "\n" for x in VALID))
    write_text(root / "testing_list.txt", "".join(x + "\n" for x in TEST))
    for stem, n in NOISE_SAMPLES.items():
        write_audio(root / "_background_noise_" / f"{stem}.wav", n=n)
    write_text(root / "_background_noise_/README.md", "noise\n")
    write_text(root / "README.md", "Speech Commands\n")
    return root


def make_test_set(root: Path) -> Path:
    """A tiny speech_commands_test_set_v0.02 (one folder per class)."""
    for folder, stem in (
        ("yes", "ff00ff00_nohash_0"),
        ("_unknown_", "ab12ab12_nohash_3"),
        ("_silence_", "doing_the_dishes_15"),
    ):
        write_audio(root / folder / f"{stem}.wav", n=16000)
    return root


@pytest.fixture()
def corpus(tmp_path):
    return make_speechcommands(tmp_path / "speech_commands_v0.02")


def test_sets(tmp_path, corpus):
    out, wav_dir = tmp_path / "data", tmp_path / "dump/silence"
    test_root = make_test_set(tmp_path / "speech_commands_test_set_v0.02")
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    args += [
        "--test_root",
        str(test_root),
        "--wav_dir",
        str(wav_dir),
        "--unknown_every",
        "2",
    ]
    assert run_cli(main, *args) == 0
    train = check_dir(out / f"train_{TASK}", 5, PROMPT, TASK)
    # Not in the lists: yes/0a7c… ×2, cat/0a7c…, cat/9c9c…, marvin/ee55…; unknown files
    # sorted by path, every 2nd kept: cat/0a7c…, marvin/ee55…
    assert train == {
        "gsc_0a7c2a8d-scr_speechcommands-cat_0a7c2a8d_nohash_0": "command:_unknown_",
        "gsc_0a7c2a8d-scr_speechcommands-yes_0a7c2a8d_nohash_0": "command:yes",
        "gsc_0a7c2a8d-scr_speechcommands-yes_0a7c2a8d_nohash_1": "command:yes",
        "gsc_ee55ff66-scr_speechcommands-marvin_ee55ff66_nohash_0": "command:_unknown_",
        # white_noise has 16000 + 1776 samples: one clip.
        "gsc_white_noise-scr_speechcommands-silence_white_noise_00000000": (
            "command:_silence_"
        ),
    }
    valid = check_dir(out / f"valid_{TASK}", 5, PROMPT, TASK)
    assert valid == {
        "gsc_1b2c3d4e-scr_speechcommands-yes_1b2c3d4e_nohash_0": "command:yes",
        "gsc_cc33dd44-scr_speechcommands-marvin_cc33dd44_nohash_0": "command:_unknown_",
        "gsc_running_tap-scr_speechcommands-silence_running_tap_00000000": (
            "command:_silence_"
        ),
        "gsc_running_tap-scr_speechcommands-silence_running_tap_00001777": (
            "command:_silence_"
        ),
        "gsc_running_tap-scr_speechcommands-silence_running_tap_00003554": (
            "command:_silence_"
        ),
    }
    clip = Path(
        table(out / f"valid_{TASK}", "wav.scp")[
            "gsc_running_tap-scr_speechcommands-silence_running_tap_00001777"
        ]
    )
    assert clip.parent == wav_dir.absolute() / "running_tap"
    noise, _ = sf.read(
        str(corpus / "_background_noise_/running_tap.wav"), dtype="int16"
    )
    assert (sf.read(str(clip), dtype="int16")[0] == noise[1777 : 1777 + 16000]).all()
    assert check_dir(out / f"test_{TASK}", 3, PROMPT, TASK) == {
        "gsc_ab12ab12-scr_speechcommands-testunknown_ab12ab12_nohash_3": (
            "command:_unknown_"
        ),
        "gsc_doing_the_dishes_15-scr_speechcommands-testsilence_doing_the_dishes_15": (
            "command:_silence_"
        ),
        "gsc_ff00ff00-scr_speechcommands-testyes_ff00ff00_nohash_0": "command:yes",
    }
    # A rerun reuses the clips.
    mtime = clip.stat().st_mtime_ns
    assert run_cli(main, *args) == 0
    assert clip.stat().st_mtime_ns == mtime


def test_without_test_root(tmp_path, corpus):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    assert run_cli(main, *args, "--wav_dir", str(tmp_path / "sil")) == 0
    assert check_dir(out / f"test_{TASK}", 2, PROMPT, TASK) == {
        "gsc_5e6f7a8b-scr_speechcommands-stop_5e6f7a8b_nohash_0": "command:stop",
        "gsc_aa11bb22-scr_speechcommands-cat_aa11bb22_nohash_0": "command:_unknown_",
    }


def test_bad_inputs(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    test_root = make_test_set(tmp_path / "test_set")
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    args += ["--wav_dir", str(tmp_path / "sil"), "--test_root", str(test_root)]
    lst = corpus / "validation_list.txt"
    lst.write_text("yes/1b2c3d4e_nohash_0.wav\nmarvin cc33dd44_nohash_0.wav\n")
    expect_error(capsys, main, args, out, f"{lst}:2", "expected '<word>/<file>.wav'")
    lst.write_text("yes/1b2c3d4e_nohash_0.wav\nmarvin/missing_nohash_0.wav\n")
    expect_error(capsys, main, args, out, "marvin/missing_nohash_0.wav", f"{lst}:2")
    lst.write_text("".join(x + "\n" for x in VALID))
    (test_root / "maybe").mkdir()
    expect_error(capsys, main, args, out, str(test_root / "maybe"), "unknown class")
    (test_root / "maybe").rmdir()
    noise = corrupt(corpus / "_background_noise_/white_noise.wav")
    expect_error(capsys, main, args, out, str(noise), "background-noise")
    write_audio(noise, n=16000, rate=8000)
    expect_error(capsys, main, args, out, str(noise), "8000 Hz")
    write_audio(noise, n=17000)
    wav = corrupt(corpus / "yes/0a7c2a8d_nohash_1.wav")
    expect_error(capsys, main, args, out, str(wav))
    (corpus / "testing_list.txt").unlink()
    expect_error(capsys, main, args, out, "testing_list.txt", "not found")
