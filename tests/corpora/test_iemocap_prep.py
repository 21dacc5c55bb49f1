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

from espnet_pruning.corpora.iemocap import main

PROMPT = "<|en|> <|er|> <|iemocap|>"
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"

# dialog -> [(turn, code, words)]
DIALOGS = {
    "Ses01F_impro01": [
        ("Ses01F_impro01_F000", "neu", "Excuse me."),
        ("Ses01F_impro01_M000", "exc", "Do you have your forms?"),
        ("Ses01F_impro01_F001", "hap", "Yeah, [LAUGHTER] I've got them!"),
        ("Ses01F_impro01_M001", "xxx", "Okay."),
    ],
    "Ses02M_script01_1": [("Ses02M_script01_1_M000", "fru", "What now?")],
    "Ses03F_impro02": [("Ses03F_impro02_M000", "sad", "I miss her.")],
    "Ses04F_impro01": [("Ses04F_impro01_M000", "ang", "Get out!")],
    "Ses04M_impro01": [
        ("Ses04M_impro01_F000", "sad", "It's over."),
        ("Ses04M_impro01_M000", "oth", "Hmm."),
    ],
    "Ses05F_script01_1": [
        ("Ses05F_script01_1_F000", "neu", "Good morning."),
        ("Ses05F_script01_1_M000", "ang", "Where were you -- all night?"),
    ],
}


def make_iemocap(root: Path) -> Path:
    """A tiny IEMOCAP_full_release with the released file layout and formats."""
    for dialog, turns in DIALOGS.items():
        session = root / f"Session{int(dialog[3:5])}"
        emo, trans = [HEADER], []
        for i, (turn, code, words) in enumerate(turns):
            emo.append(
                f"[{i * 5 + 1.5:.4f} - {i * 5 + 4.25:.4f}]\t{turn}\t{code}\t"
                "[2.5000, 3.0000, 3.5000]\n"
                "C-E1:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  3;\t()\n\n"
            )
            trans.append(
                f"{turn} [{i * 5 + 1.5:08.4f}-{i * 5 + 4.25:08.4f}]: {words}\n"
            )
            write_audio(session / "sentences/wav" / dialog / f"{turn}.wav")
        # Non-turn lines and an unlabelled turn (no audio) occur in the transcripts.
        trans.append(f"{dialog}_MXX0 [100.0000-101.0000]: Ha.\n")
        write_text(session / "dialog/EmoEvaluation" / f"{dialog}.txt", "".join(emo))
        write_text(session / "dialog/transcriptions" / f"{dialog}.txt", "".join(trans))
    for s in range(1, 6):
        for sub in ("dialog/EmoEvaluation", "dialog/transcriptions", "sentences/wav"):
            (root / f"Session{s}" / sub).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture()
def corpus(tmp_path):
    return make_iemocap(tmp_path / "IEMOCAP_full_release")


def test_sets_labels_and_text(tmp_path, corpus):
    out = tmp_path / "data"
    assert (
        run_cli(main, "--root", str(corpus), "--out_dir", str(out), "--no_progress")
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "test_er_iemocap",
        "train_er_iemocap",
        "valid_er_iemocap",
    ]
    train = check_dir(out / "train_er_iemocap", 4, PROMPT, "er_iemocap")
    assert train == {
        "iemocap_Ses01F-er_iemocap-Ses01F_impro01_F000": "em:neu SEP excuse me",
        "iemocap_Ses01F-er_iemocap-Ses01F_impro01_F001": "em:hap SEP yeah i've got them",
        "iemocap_Ses03M-er_iemocap-Ses03F_impro02_M000": "em:sad SEP i miss her",
        "iemocap_Ses04M-er_iemocap-Ses04F_impro01_M000": "em:ang SEP get out",
    }
    valid = check_dir(out / "valid_er_iemocap", 1, PROMPT, "er_iemocap")
    assert valid == {
        "iemocap_Ses04F-er_iemocap-Ses04M_impro01_F000": "em:sad SEP it's over"
    }
    test = check_dir(out / "test_er_iemocap", 2, PROMPT, "er_iemocap")
    assert test == {
        "iemocap_Ses05F-er_iemocap-Ses05F_script01_1_F000": "em:neu SEP good morning",
        "iemocap_Ses05M-er_iemocap-Ses05F_script01_1_M000": (
            "em:ang SEP where were you all night"
        ),
    }
    utt2spk = table(out / "train_er_iemocap", "utt2spk")
    assert utt2spk["iemocap_Ses01F-er_iemocap-Ses01F_impro01_F000"] == "iemocap_Ses01F"
    wav = table(out / "test_er_iemocap", "wav.scp")[
        "iemocap_Ses05F-er_iemocap-Ses05F_script01_1_F000"
    ]
    assert wav == str(
        corpus / "Session5/sentences/wav/Ses05F_script01_1/Ses05F_script01_1_F000.wav"
    )
    assert set(table(out / "test_er_iemocap", "utt2num_samples").values()) == {"800"}


def test_merge_excited_and_rerun(tmp_path, corpus):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    assert run_cli(main, *args, "--merge_excited") == 0
    text = table(out / "train_er_iemocap", "text")
    assert text["iemocap_Ses01M-er_iemocap-Ses01F_impro01_M000"] == (
        "em:hap SEP do you have your forms"
    )
    # A rerun replaces the directories cleanly (no temporaries left).
    assert run_cli(main, *args, "--skip_audio_check") == 0
    assert len(table(out / "train_er_iemocap", "text")) == 4
    assert not (out / "train_er_iemocap/utt2num_samples").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_dry_run(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    assert run_cli(main, "--root", str(corpus), "--out_dir", str(out), "--dry_run") == 0
    assert "would write" in capsys.readouterr().out
    assert not out.exists()


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_bad_inputs(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    emo = corpus / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    trans = corpus / "Session1/dialog/transcriptions/Ses01F_impro01.txt"
    wav = corpus / "Session5/sentences/wav/Ses05F_script01_1/Ses05F_script01_1_M000.wav"
    missing = tmp_path / "nowhere"
    expect_error(
        capsys, main, ["--root", str(missing), "--out_dir", str(out)], out, str(missing)
    )
    # Unknown emotion code: path and line of the header.
    _edit(emo, "\tneu\t", "\tzzz\t")
    expect_error(capsys, main, args, out, f"{emo}:3", "unknown emotion code 'zzz'")
    _edit(emo, "\tzzz\t", "\tneu\t")
    # Malformed header line (a field missing).
    _edit(emo, "\tSes01F_impro01_F001\thap", "\tSes01F_impro01_F001 hap")
    expect_error(capsys, main, args, out, f"{emo}:11", "malformed turn header")
    _edit(emo, "\tSes01F_impro01_F001 hap", "\tSes01F_impro01_F001\thap")
    # Transcription line without the time stamp.
    _edit(trans, "Ses01F_impro01_F000 [001.5000-004.2500]:", "Ses01F_impro01_F000:")
    expect_error(capsys, main, args, out, f"{trans}:1", "malformed transcription")
    _edit(trans, "Ses01F_impro01_F000:", "Ses01F_impro01_F000 [001.5000-004.2500]:")
    # Missing annotation file.
    trans.rename(trans.with_suffix(".bak"))
    expect_error(capsys, main, args, out, str(trans), "not found")
    trans.with_suffix(".bak").rename(trans)
    # Corrupt and missing audio: the file and the annotation line that lists it.
    corrupt(wav)
    expect_error(capsys, main, args, out, str(wav), "Ses05F_script01_1.txt:7")
    wav.unlink()
    expect_error(capsys, main, args, out, str(wav), "audio file not found")
    # --skip_missing_audio drops it instead.
    assert run_cli(main, *args, "--skip_missing_audio") == 0
    assert len(table(out / "test_er_iemocap", "text")) == 1
