"""SLURP figures against SLURP's official scorer itself.

The scorer is the copy of the SLURP repository's ``scripts/evaluation`` that ESPnet's
``egs2/slurp_entity/asr1/local/evaluation`` carries (its ``metrics/`` is the official code
up to formatting), extracted from the espnet source distribution by ``make -C tools``; it
runs with the versions SLURP's ``requirements.txt`` pins (``jiwer`` 2.0.0, ``textdistance``
4.1.5, ``progress`` 1.5; ``tabulate`` 0.9.0, since 0.8.7 fails on Python >= 3.10), which
the ``test`` extra installs. Nothing is fetched at run time.

The fixture has the tricky gold spans (``jessica 's``, ``u. s. d.``, ``tomorrow 's``,
``@john``, adjacent multi-token entities) and the edge cases (empty filler, a doubled space
in a filler, two entities of one type, spurious types, a recording without a prediction).
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from espnet_pruning.bin.uslu_score import score_files
from espnet_pruning.corpora.slurp import gold_entities, ner_text
from espnet_pruning.scoring.entities import Entity, parse_entities

ROOT = Path(__file__).resolve().parents[2]
EVALUATION = ROOT / "tools/espnet/egs2/slurp_entity/asr1/local/evaluation"

pytestmark = pytest.mark.skipif(
    not (EVALUATION / "metrics" / "metrics.py").is_file(),
    reason="make -C tools first (SLURP's scorer comes with ESPnet's recipes)",
)


def _load(name: str, path: Path, package: bool = False):
    spec = importlib.util.spec_from_file_location(
        name,
        path / "__init__.py" if package else path,
        submodule_search_locations=[str(path)] if package else None,
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def official():
    """SLURP's ``metrics`` package and ``util`` module."""
    return (
        _load("slurp_official_metrics", EVALUATION / "metrics", package=True),
        _load("slurp_official_util", EVALUATION / "util.py"),
    )


def record(sid, surfaces, scenario, action, entities, files):
    """A jsonl record of the SLURP release (``entities``: ``(type, token ids)``)."""
    return {
        "slurp_id": sid,
        "sentence": " ".join(surfaces),
        "scenario": scenario,
        "action": action,
        "intent": f"{scenario}_{action}",
        "tokens": [
            {"surface": s, "id": i, "lemma": s, "pos": "X"}
            for i, s in enumerate(surfaces)
        ],
        "entities": [{"type": t, "span": span} for t, span in entities],
        "recordings": [{"file": f} for f in files],
    }


RECORDS = [
    record(
        1,
        "wake me up at five am this week".split(),
        "alarm",
        "set",
        [("time", [4, 5]), ("date", [6, 7])],
        ["audio-1.flac", "audio-1-headset.flac"],
    ),
    record(
        2,
        ["is", "Jessica", "'s", "birthday", "on", "april", "twelfth"],
        "calendar",
        "query",
        [("person", [1, 2]), ("date", [5, 6])],
        ["audio-2.flac"],
    ),
    record(
        3,
        "what is the exchange rate of u. s. d. to cad".split(),
        "qa",
        "currency",
        [("currency_name", [6, 7, 8]), ("currency_name", [10])],
        ["audio-3.flac"],
    ),
    record(
        4,
        "set a reminder about tomorrow 's meeting at nine am".split(),
        "calendar",
        "set",
        [("date", [4, 5]), ("event_name", [6]), ("time", [8, 9])],
        ["audio-4.flac"],
    ),
    record(
        5,
        ["email", "@John"],
        "email",
        "sendemail",
        [("person", [1])],
        ["audio-5.flac"],
    ),
    record(6, "turn the lights up".split(), "iot", "hue_lightup", [], ["audio-6.flac"]),
]

#: Predictions in the official format (``file`` -> scenario, action, entities).
PREDICTIONS = {
    "audio-1.flac": ("alarm", "set", [("time", "five am"), ("date", "this week")]),
    "audio-1-headset.flac": ("alarm", "query", [("time", "five  am"), ("date", "")]),
    "audio-2.flac": ("calendar", "set", [("person", "jessica's"), ("date", "april")]),
    "audio-3.flac": ("qa", "currency", [("currency_name", "cad"), ("currency_name", "u s d")]),
    # audio-4.flac: no prediction (the official scorer skips the recording)
    "audio-5.flac": ("email", "sendemail", [("person", "@john"), ("date", "today")]),
    "audio-6.flac": ("iot", "hue_lighton", [("device_type", "lights")]),
}  # fmt: skip


def test_gold_fillers_follow_the_official_rule(official):
    _, util = official
    for rec in RECORDS:
        ours = [{"type": t, "filler": f} for t, f in gold_entities(rec, "fixture")]
        for file in rec["recordings"]:
            assert util.release2prediction(rec)[file["file"]]["entities"] == ours
        # the NER target text carries them unchanged
        target = ner_text(gold_entities(rec, "fixture"), rec["sentence"].lower())
        assert parse_entities(target).entities == tuple(
            Entity(e["type"], e["filler"]) for e in ours
        )


def _official_figures(official):
    """What SLURP's ``evaluate.py`` computes (its main loop over the gold recordings)."""
    metrics, util = official
    new = metrics.ErrorMetric.get_instance
    gold = {}
    for rec in RECORDS:
        gold.update(util.release2prediction(rec))
    figures = {k: new(metric="f1") for k in ("scenario", "action", "intent")}
    span = new(metric="span_f1")
    distance = {d: new(metric="span_distance_f1", distance=d) for d in ("word", "char")}
    for file, g in gold.items():
        if file not in PREDICTIONS:
            continue
        scenario, action, entities = PREDICTIONS[file]
        pred = [{"type": t, "filler": f} for t, f in entities]
        figures["scenario"](g["scenario"], scenario)
        figures["action"](g["action"], action)
        figures["intent"](f"{g['scenario']}_{g['action']}", f"{scenario}_{action}")
        span(g["entities"], pred)
        for metric in distance.values():
            metric(g["entities"], pred)
    slu = new(metric="slu_f1")
    out = {k: m.get_metric()["overall"] for k, m in figures.items()}
    out["span"] = span.get_metric()["overall"]
    for d, metric in distance.items():
        out[d] = metric.get_metric()
        slu(out[d])
        out[d] = out[d]["overall"]
    out["slu"] = slu.get_metric()["overall"]
    return out


def _write(path: Path, texts) -> Path:
    path.write_text("".join(f"{u} {t}\n" for u, t in texts.items()), encoding="utf-8")
    return path


def _uttid(file: str) -> str:
    return f"slurp_x-{file[: -len('.flac')]}"


def test_scores_equal_the_official_scorer(official, tmp_path):
    ic_refs, ner_refs, ic_hyps, ner_hyps = {}, {}, {}, {}
    for rec in RECORDS:
        for file in (r["file"] for r in rec["recordings"]):
            u = _uttid(file)
            transcript = rec["sentence"].lower()
            ic_refs[u] = f"{rec['scenario']}_{rec['action']} SEP {transcript}"
            ner_refs[u] = ner_text(gold_entities(rec, "fixture"), transcript)
            if file in PREDICTIONS:
                scenario, action, entities = PREDICTIONS[file]
                ic_hyps[u] = f"<|en|> <|ic|> <|slurp|> {scenario}_{action}"
                ner_hyps[u] = "<|en|> <|ner|> <|slurp|> " + ner_text(entities, "x")
    assert "<FILL> five  am <SEP>" in ner_hyps[_uttid("audio-1-headset.flac")]
    expected = _official_figures(official)

    ner = score_files(
        "slu_f1",
        _write(tmp_path / "ner_ref", ner_refs),
        _write(tmp_path / "ner_hyp", ner_hyps),
        tmp_path / "ner",
    )
    assert (ner.n, ner.details["n_missing"], ner.details["missing"]) == (6, 1, "skip")
    assert ner.value == pytest.approx(100 * expected["slu"][2], abs=1e-9)
    for ours, theirs in (
        ("slu", "slu"),
        ("word", "word"),
        ("char", "char"),
        ("span", "span"),
    ):
        p, r, f1, tp, fp, fn = expected[theirs]
        got = ner.details[ours]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(
            (100 * p, 100 * r, 100 * f1), abs=1e-9
        ), ours
        assert (got["tp"], got["fp"], got["fn"]) == pytest.approx((tp, fp, fn))  # fmt: skip
    # By hand, so that the comparison cannot pass vacuously: exact-span TP 4 (five am,
    # this week, cad, @john); FP 7 (five  am, "", jessica's, april, u s d, today,
    # lights); FN 5 (both of audio-1-headset and of audio-2, u. s. d.).
    assert expected["span"][3:] == (4, 7, 5)

    ic = score_files(
        "accuracy",
        _write(tmp_path / "ic_ref", ic_refs),
        _write(tmp_path / "ic_hyp", ic_hyps),
        tmp_path / "ic",
        figures=("slurp_intent",),
    )
    figures = ic.details["slurp_intent"]
    assert figures["n"] == ic.n == 6
    for name in ("scenario", "action", "intent"):
        assert figures[f"{name}_accuracy"] == pytest.approx(
            100 * expected[name][2], abs=1e-9
        )
    assert ic.value == pytest.approx(100 * expected["intent"][2], abs=1e-9)
    # 6 scored: scenario right 6/6, action right 3/6 (audio-1-headset, 2 and 6 wrong)
    assert (figures["scenario_accuracy"], figures["action_accuracy"]) == (100.0, 50.0)
    record = json.loads((tmp_path / "ic" / "result.json").read_text())
    assert record["details"]["slurp_intent"] == figures
