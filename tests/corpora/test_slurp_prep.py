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

from espnet_pruning.corpora.slurp import main

IC = "<|en|> <|ic|> <|slurp|>"
NER = "<|en|> <|ner|> <|slurp|>"


def record(sid, surfaces, scenario, action, entities, files, sentence=None):
    """A jsonl record as released: ``surfaces`` are the ``tokens``, ``entities``
    ``(type, [token ids])``; ``sentence`` defaults to the surfaces joined by spaces."""
    return {
        "slurp_id": sid,
        "sentence": sentence if sentence is not None else " ".join(surfaces),
        "sentence_annotation": "(not read)",
        "intent": f"{scenario}_{action}",
        "action": action,
        "scenario": scenario,
        "tokens": [
            {"surface": w, "id": i, "lemma": w.lower(), "pos": "X"}
            for i, w in enumerate(surfaces)
        ],
        "recordings": [
            {"file": f, "wer": 0.0, "ent_wer": None, "status": "correct"} for f in files
        ],
        "entities": [{"type": t, "span": span} for t, span in entities],
    }


SPLITS = {
    "train": [
        record(
            1,
            "wake me up at five am this week".split(),
            "alarm",
            "set",
            [("time", [4, 5]), ("date", [6, 7])],  # adjacent multi-token entities
            ["audio-1490007041.flac", "audio-1490007041-headset.flac"],
        ),
        # slurp_id 962-like: the intent field is not scenario_action.
        dict(
            record(
                962,
                ["Turn", "the", "lights", "up", "."],
                "iot",
                "hue_lightup",
                [],
                ["audio--1504194195.flac"],
                sentence="Turn the lights up.",
            ),
            intent="hue_lightup",
        ),
    ],
    "devel": [
        record(
            3,
            ["email", "@John"],
            "email",
            "sendemail",
            [("person", [1])],
            ["audio-1500000003.flac"],
        ),
    ],
    "test": [
        # The tricky spans of the release: a clitic token ("today 's"), spelled letters
        # ("u. s. d."), an entity made of tokens of two words.
        record(
            4,
            ["what", "'s", "today", "'s", "rate", "of", "U.", "S.", "D.", "in", "Cad"],
            "qa",
            "currency",
            [("date", [2, 3]), ("currency_name", [6, 7, 8]), ("currency_name", [10])],
            ["audio-1500000004.flac"],
            sentence="what's today's rate of U. S. D. in Cad",
        ),
    ],
    "train_synthetic": [
        record(
            5,
            ["Play", "Jazz"],
            "play",
            "music",
            [("music_genre", [1])],
            ["audio-1555000005.flac"],
        ),
    ],
}
SPEAKERS = {
    "audio-1490007041.flac": "FO-488",
    "audio-1490007041-headset.flac": "FO-488",
    "audio--1504194195.flac": "ME-140",
    "audio-1500000003.flac": "UNK-001",
    "audio-1500000004.flac": "FE-222",
}


def make_slurp(root: Path) -> Path:
    """A tiny SLURP (text release + audio tarballs extracted) in the released layout."""
    text = root / "dataset/slurp"
    for split, records in SPLITS.items():
        write_text(
            text / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records)
        )
        kind = "synth" if split == "train_synthetic" else "real"
        for r in records:
            for rec in r["recordings"]:
                write_audio(root / f"audio/slurp_{kind}" / rec["file"], fmt="FLAC")
    meta = {}
    for n, (name, usrid) in enumerate(SPEAKERS.items()):
        meta[str(n)] = {
            "recordings": {
                name: {"ansid": n, "recid": n, "status": "correct", "usrid": usrid}
            },
            "status": "correct",
        }
    write_text(text / "metadata.json", json.dumps(meta))
    return root


@pytest.fixture()
def corpus(tmp_path):
    return make_slurp(tmp_path / "slurp")


def test_ic_ner_and_continual_sets(tmp_path, corpus):
    out = tmp_path / "data"
    assert (
        run_cli(main, "--root", str(corpus), "--out_dir", str(out), "--no_progress")
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            f"{s}_{t}"
            for s in ("train", "valid", "test")
            for t in ("ic_slurp", "ner_slurp")
        ]
        + ["train_cl_ic", "train_cl_ic_mix", "valid_cl_ic"]
    )
    train_ic = check_dir(out / "train_ic_slurp", 3, IC, "ic_slurp")
    assert train_ic == {
        "slurp_FO_488-ic_slurp-audio-1490007041": (
            "alarm_set SEP wake me up at five am this week"
        ),
        "slurp_FO_488-ic_slurp-audio-1490007041-headset": (
            "alarm_set SEP wake me up at five am this week"
        ),
        "slurp_ME_140-ic_slurp-audio--1504194195": "iot_hue_lightup SEP turn the lights up",
    }
    train_ner = check_dir(out / "train_ner_slurp", 3, NER, "ner_slurp")
    assert train_ner["slurp_FO_488-ner_slurp-audio-1490007041"] == (
        "<entity:time> <FILL> five am <SEP> <entity:date> <FILL> this week <SEP> "
        "wake me up at five am this week"
    )
    assert train_ner["slurp_ME_140-ner_slurp-audio--1504194195"] == "turn the lights up"
    # Fillers as SLURP's official scorer builds its gold ones: the token surfaces of the
    # span, lowercased, joined by single spaces ("@john", not the transcript's "at john").
    assert check_dir(out / "valid_ner_slurp", 1, NER, "ner_slurp") == {
        "slurp_UNK_001-ner_slurp-audio-1500000003": (
            "<entity:person> <FILL> @john <SEP> email at john"
        )
    }
    assert check_dir(out / "test_ner_slurp", 1, NER, "ner_slurp") == {
        "slurp_FE_222-ner_slurp-audio-1500000004": (
            "<entity:date> <FILL> today 's <SEP> <entity:currency_name> <FILL> u. s. d. "
            "<SEP> <entity:currency_name> <FILL> cad <SEP> what's today's rate of u s d "
            "in cad"
        )
    }
    assert check_dir(out / "test_ic_slurp", 1, IC, "ic_slurp") == {
        "slurp_FE_222-ic_slurp-audio-1500000004": (
            "qa_currency SEP what's today's rate of u s d in cad"
        )
    }
    synth = {"slurp_synthetic-ic_slurp-audio-1555000005": "play_music SEP play jazz"}
    assert check_dir(out / "train_cl_ic", 1, IC, "ic_slurp") == synth
    assert check_dir(out / "train_cl_ic_mix", 4, IC, "ic_slurp") == {
        **train_ic,
        **synth,
    }
    assert check_dir(out / "valid_cl_ic", 1, IC, "ic_slurp") == table(
        out / "valid_ic_slurp", "text"
    )
    wav = table(out / "train_cl_ic", "wav.scp")
    assert list(wav.values()) == [
        str(corpus / "audio/slurp_synth/audio-1555000005.flac")
    ]


def test_ic_only_without_synthetic(tmp_path, corpus):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    assert run_cli(main, *args, "--tasks", "ic_slurp", "--skip_synthetic") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "test_ic_slurp",
        "train_ic_slurp",
        "valid_ic_slurp",
    ]


def _rewrite(path: Path, n: int, **changes) -> None:
    lines = path.read_text().splitlines()
    rec = json.loads(lines[n])
    rec.update(changes)
    lines[n] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


def test_bad_inputs(tmp_path, corpus, capsys):
    out = tmp_path / "data"
    args = ["--root", str(corpus), "--out_dir", str(out), "--no_progress"]
    train = corpus / "dataset/slurp/train.jsonl"
    original = train.read_text()
    _rewrite(train, 0, entities=[{"type": "time", "span": [4, 9]}])
    expect_error(capsys, main, args, out, f"{train}:1", "span index 9 names no token")
    train.write_text(original)
    _rewrite(train, 0, entities=[{"type": "time", "span": []}])
    expect_error(capsys, main, args, out, f"{train}:1: entities[0]", "non-empty list")
    train.write_text(original)
    _rewrite(train, 0, tokens=[{"surface": "<SEP>"}] * 8)
    expect_error(capsys, main, args, out, f"{train}:1", "surface '<SEP>' cannot be")
    train.write_text(original)
    _rewrite(train, 0, entities=[{"type": "Time Of Day", "span": [4]}])
    expect_error(capsys, main, args, out, f"{train}:1", "entity type 'Time Of Day'")
    train.write_text(original)
    _rewrite(train, 0, scenario="Alarm Clock")
    expect_error(capsys, main, args, out, f"{train}:1", "unknown intent label")
    train.write_text(original)
    train.write_text(original + "{not json\n")
    expect_error(capsys, main, args, out, f"{train}:3", "not valid JSON")
    train.write_text(original)
    meta = corpus / "dataset/slurp/metadata.json"
    meta.rename(meta.with_suffix(".bak"))
    expect_error(capsys, main, args, out, str(meta), "not found")
    meta.with_suffix(".bak").write_text(
        meta.with_suffix(".bak").read_text().replace("audio--1504194195", "audio-x")
    )
    meta.with_suffix(".bak").rename(meta)
    expect_error(capsys, main, args, out, f"{train}:2", "no speaker in metadata.json")
    make_slurp(corpus)
    flac = corrupt(corpus / "audio/slurp_real/audio-1500000004.flac")
    expect_error(capsys, main, args, out, str(flac), "dataset/slurp/test.jsonl:1")
