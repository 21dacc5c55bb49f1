import json
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

from espnet_pruning.corpora.snips import main

PROMPT = "<|en|> <|ic|> <|snips|>"
QUERIES = {
    "SwitchLightOn": [
        [
            {"text": "Turn on the lights in the "},
            {"text": "kitchen", "entity": "room", "slot_name": "room"},
        ]
    ],
    "SwitchLightOff": [[{"text": "Lights off, please!"}]],
    "IncreaseBrightness": [[{"text": "Brighter"}]],
    "DecreaseBrightness": [[{"text": "Dim the lights"}]],
    "SetLightBrightness": [
        [{"text": "Set the lights to "}, {"text": "fifty", "slot_name": "brightness"}]
    ],
    "SetLightColor": [
        [
            {"text": "Make the "},
            {"text": "bedroom", "slot_name": "room"},
            {"text": " light red"},
        ]
    ],
}
# id -> (worker, text as recorded)
RECORDINGS = {
    "101": ("w7", "turn on the lights in the kitchen"),
    "102": ("w7", "Lights off please"),
    "103": ("w2", "brighter"),
    "104": ("w2", "Dim the lights."),
    "105": ("w9", "set the lights to fifty"),
    "106": ("w9", "Make the bedroom light red"),
}


def make_snips(root: Path) -> Path:
    """A tiny smart-lights-en-close-field in the released layout."""
    dataset = {
        "intents": {
            intent: {"utterances": [{"data": chunks} for chunks in queries]}
            for intent, queries in QUERIES.items()
        },
        "entities": {},
        "language": "en",
    }
    write_text(root / "dataset.json", json.dumps(dataset))
    meta = {}
    for rid, (worker, text) in RECORDINGS.items():
        meta[rid] = {
            "filename": f"{rid}.wav",
            "text": text,
            "worker": {"id": worker, "country": "US"},
            "id": int(rid),
        }
        write_audio(root / "speech_corpus/audio" / f"{rid}.wav")
    write_text(root / "speech_corpus/metadata.json", json.dumps(meta))
    return root


@pytest.fixture()
def corpus(tmp_path):
    return make_snips(tmp_path / "smart-lights-en-close-field")


def test_sets(tmp_path, corpus):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    assert run_cli(main, *args, "--n_valid", "1", "--n_test", "2") == 0
    # Sorted by utterance id: w2's 103, 104, then w7's, then w9's.
    assert check_dir(out / "valid_ic_snips", 1, PROMPT, "ic_snips") == {
        "snips_w2-ic_snips-103": "INCREASEBRIGHTNESS SEP brighter"
    }
    assert check_dir(out / "test_ic_snips", 2, PROMPT, "ic_snips") == {
        "snips_w2-ic_snips-104": "DECREASEBRIGHTNESS SEP dim the lights",
        "snips_w7-ic_snips-101": "SWITCHLIGHTON SEP turn on the lights in the kitchen",
    }
    assert check_dir(out / "train_ic_snips", 3, PROMPT, "ic_snips") == {
        "snips_w7-ic_snips-102": "SWITCHLIGHTOFF SEP lights off please",
        "snips_w9-ic_snips-105": "SETLIGHTBRIGHTNESS SEP set the lights to fifty",
        "snips_w9-ic_snips-106": "SETLIGHTCOLOR SEP make the bedroom light red",
    }
    assert table(out / "train_ic_snips", "wav.scp")["snips_w7-ic_snips-102"] == str(
        corpus / "speech_corpus/audio/102.wav"
    )


def test_bad_inputs(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    args += ["--n_valid", "1", "--n_test", "1"]
    meta_path = corpus / "speech_corpus/metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["104"]["text"] = "make it rain"
    meta_path.write_text(json.dumps(meta))
    expect_error(capsys, main, args, out, str(meta_path), "'104'", "matches no query")
    make_snips(corpus)
    data_path = corpus / "dataset.json"
    data = json.loads(data_path.read_text())
    data["intents"]["PlayMusic"] = {"utterances": []}
    data_path.write_text(json.dumps(data))
    expect_error(capsys, main, args, out, str(data_path), "unknown intent 'PlayMusic'")
    data_path.write_text('{\n  "intents": \n')
    expect_error(capsys, main, args, out, f"{data_path}:3", "not valid JSON")
    make_snips(corpus)
    wav = corrupt(corpus / "speech_corpus/audio/105.wav")
    expect_error(capsys, main, args, out, str(wav), "entry '105'")
    make_snips(corpus)
    expect_error(
        capsys, main, args + ["--n_test", "5"], out, "6 recordings", "need more"
    )
