from pathlib import Path

import pytest
from corpora_testlib import (
    check_dir,
    corrupt,
    expect_error,
    run_cli,
    table,
    write_audio,
    write_text,
)

from espnet_pruning.corpora.librispeech import main

PROMPT = "<|en|> <|asr|> <|librispeech|>"
# subset -> reader -> chapter -> transcripts
SUBSETS = {
    "train-clean-100": {
        "103": {"1240": ["CHAPTER ONE", "MISSUS RACHEL LYNDE'S HOUSE"]}
    },
    "train-clean-360": {"100": {"121669": ["TOM THE PIPER'S SON"]}},
    "dev-clean": {"1272": {"128104": ["MISTER QUILTER IS THE APOSTLE"]}},
    "dev-other": {"116": {"288045": ["AS I APPROACHED THE CITY"]}},
    "test-clean": {"1089": {"134686": ["HE HOPED THERE WOULD BE STEW"]}},
    "test-other": {"1688": {"142285": ["THERE'S IRON THEY SAY", "NO SIR"]}},
}


def make_librispeech(root: Path) -> Path:
    """A tiny LibriSpeech (OpenSLR 12 tarballs extracted) with FLAC audio."""
    write_text(root / "SPEAKERS.TXT", ";ID|SEX|SUBSET|MINUTES|NAME\n")
    for subset, readers in SUBSETS.items():
        for reader, chapters in readers.items():
            for chapter, lines in chapters.items():
                d = root / subset / reader / chapter
                trans = []
                for i, words in enumerate(lines):
                    utt = f"{reader}-{chapter}-{i:04d}"
                    trans.append(f"{utt} {words}\n")
                    write_audio(d / f"{utt}.flac", fmt="FLAC")
                write_text(d / f"{reader}-{chapter}.trans.txt", "".join(trans))
    return root


@pytest.fixture()
def corpus(tmp_path):
    return make_librispeech(tmp_path / "LibriSpeech")


def test_sets(tmp_path, corpus):
    out = tmp_path / "data"
    assert (
        run_cli(main, "--root", str(corpus), "--out_dir", str(out), "--no_progress")
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "test_asr_librispeech",
        "train_asr_librispeech",
        "train_cl_asr",
        "valid_asr_librispeech",
        "valid_cl_asr",
    ]
    task = "asr_librispeech"
    assert check_dir(out / "train_asr_librispeech", 2, PROMPT, task) == {
        "libri_103-asr_librispeech-103-1240-0000": "CHAPTER ONE",
        "libri_103-asr_librispeech-103-1240-0001": "MISSUS RACHEL LYNDE'S HOUSE",
    }
    valid = check_dir(out / "valid_asr_librispeech", 2, PROMPT, task)
    assert valid == {
        "libri_116-asr_librispeech-116-288045-0000": "AS I APPROACHED THE CITY",
        "libri_1272-asr_librispeech-1272-128104-0000": "MISTER QUILTER IS THE APOSTLE",
    }
    assert check_dir(out / "valid_cl_asr", 2, PROMPT, task) == valid
    assert check_dir(out / "test_asr_librispeech", 2, PROMPT, task) == {
        "libri_1688-asr_librispeech-1688-142285-0000": "THERE'S IRON THEY SAY",
        "libri_1688-asr_librispeech-1688-142285-0001": "NO SIR",
    }
    assert check_dir(out / "train_cl_asr", 1, PROMPT, task) == {
        "libri_100-asr_librispeech-100-121669-0000": "TOM THE PIPER'S SON"
    }
    assert table(out / "train_cl_asr", "wav.scp") == {
        "libri_100-asr_librispeech-100-121669-0000": str(
            corpus / "train-clean-360/100/121669/100-121669-0000.flac"
        )
    }
    assert table(out / "train_cl_asr", "utt2spk") == {
        "libri_100-asr_librispeech-100-121669-0000": "libri_100"
    }


def test_subset_options(tmp_path, corpus):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    assert run_cli(main, *args, "--test_subsets", "test-clean", "--cl_subsets") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "test_asr_librispeech",
        "train_asr_librispeech",
        "valid_asr_librispeech",
    ]
    assert list(table(out / "test_asr_librispeech", "text").values()) == [
        "HE HOPED THERE WOULD BE STEW"
    ]


def test_bad_inputs(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    trans = corpus / "test-other/1688/142285/1688-142285.trans.txt"
    good = trans.read_text()
    trans.write_text(good.replace("NO SIR", "no sir"))
    expect_error(capsys, main, args, out, f"{trans}:2", "upper-case")
    trans.write_text(good.replace("1688-142285-0001", "1688-999-0001"))
    expect_error(capsys, main, args, out, f"{trans}:2", "1688-999-0001")
    trans.write_text(good)
    subset = corpus / "train-clean-360"
    subset.rename(corpus / "elsewhere")
    expect_error(capsys, main, args, out, str(subset), "not found")
    (corpus / "elsewhere").rename(subset)
    flac = corrupt(corpus / "dev-clean/1272/128104/1272-128104-0000.flac")
    expect_error(capsys, main, args, out, str(flac), "1272-128104.trans.txt:1")
