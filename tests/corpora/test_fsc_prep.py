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

from espnet_pruning.corpora.fsc import main

PROMPT = "<|en|> <|ic|> <|fsc|>"
HEADER = ",path,speakerId,transcription,action,object,location\n"
# split -> (speaker, uuid, transcription, action, object, location)
ROWS = {
    "train": [
        (
            "2BqVo8kVB2Skwgyb",
            "0a3b5aa0-45f3-11e9-8ec0-7bf21d1cfe30",
            "Turn on the lights",
            "activate",
            "lights",
            "none",
        ),
        (
            "2BqVo8kVB2Skwgyb",
            "0a3b5aa1-45f3-11e9-8ec0-7bf21d1cfe30",
            "Switch the language, please",
            "change language",
            "Chinese",
            "none",
        ),
    ],
    "valid": [
        (
            "35v28XaVEns4WXOv",
            "1b2c3d4e-45f3-11e9-8ec0-7bf21d1cfe30",
            "Kitchen lights off",
            "deactivate",
            "lights",
            "kitchen",
        ),
    ],
    "test": [
        (
            "4aGjX3AG5xcxeL7a",
            "2c3d4e5f-45f3-11e9-8ec0-7bf21d1cfe30",
            "Turn the heat up in the washroom",
            "increase",
            "heat",
            "washroom",
        ),
    ],
}


def make_fsc(root: Path) -> Path:
    """A tiny fluent_speech_commands_dataset in the released layout."""
    for split, rows in ROWS.items():
        lines = [HEADER]
        for i, (spk, uuid, words, action, obj, loc) in enumerate(rows):
            path = f"wavs/speakers/{spk}/{uuid}.wav"
            quoted = f'"{words}"' if "," in words else words
            lines.append(f"{i},{path},{spk},{quoted},{action},{obj},{loc}\n")
            write_audio(root / path)
        write_text(root / f"data/{split}_data.csv", "".join(lines))
    write_text(root / "data/speaker_demographics.csv", "speakerId,...\n")
    return root


@pytest.fixture()
def corpus(tmp_path):
    return make_fsc(tmp_path / "fluent_speech_commands_dataset")


def test_sets(tmp_path, corpus):
    out = tmp_path / "data"
    assert (
        run_cli(main, "--root", str(corpus), "--out_dir", str(out), "--no_progress")
        == 0
    )
    assert check_dir(out / "train_ic_fsc", 2, PROMPT, "ic_fsc") == {
        "fsc_2BqVo8kVB2Skwgyb-ic_fsc-0a3b5aa0-45f3-11e9-8ec0-7bf21d1cfe30": (
            "in:activate_lights_none SEP turn on the lights"
        ),
        "fsc_2BqVo8kVB2Skwgyb-ic_fsc-0a3b5aa1-45f3-11e9-8ec0-7bf21d1cfe30": (
            "in:change_language_chinese_none SEP switch the language please"
        ),
    }
    assert check_dir(out / "valid_ic_fsc", 1, PROMPT, "ic_fsc") == {
        "fsc_35v28XaVEns4WXOv-ic_fsc-1b2c3d4e-45f3-11e9-8ec0-7bf21d1cfe30": (
            "in:deactivate_lights_kitchen SEP kitchen lights off"
        )
    }
    assert list(check_dir(out / "test_ic_fsc", 1, PROMPT, "ic_fsc").values()) == [
        "in:increase_heat_washroom SEP turn the heat up in the washroom"
    ]
    assert table(out / "test_ic_fsc", "utt2spk") == {
        "fsc_4aGjX3AG5xcxeL7a-ic_fsc-2c3d4e5f-45f3-11e9-8ec0-7bf21d1cfe30": (
            "fsc_4aGjX3AG5xcxeL7a"
        )
    }


def test_bad_inputs(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    csv = corpus / "data/valid_data.csv"
    good = csv.read_text()
    csv.write_text(good.replace(",kitchen\n", ",garage\n"))
    expect_error(capsys, main, args, out, f"{csv}:2", "unknown location 'garage'")
    csv.write_text(good.replace(",deactivate,", ",deactivate,extra,"))
    expect_error(capsys, main, args, out, f"{csv}:2", "8 fields")
    csv.write_text(good.replace(",transcription,", ",words,"))
    expect_error(capsys, main, args, out, f"{csv}:1", "header")
    csv.unlink()
    expect_error(capsys, main, args, out, str(csv), "not found")
    csv.write_text(good)
    wav = corrupt(
        corpus
        / "wavs/speakers/4aGjX3AG5xcxeL7a/2c3d4e5f-45f3-11e9-8ec0-7bf21d1cfe30.wav"
    )
    expect_error(capsys, main, args, out, str(wav), "test_data.csv:2")
