"""Continual-learning report from score files: series, before/after, forgetting."""

import json

import pytest
import yaml

from espnet_pruning.errors import DataError
from espnet_pruning.reports.continual_report import (
    ContinualSystem,
    collect_series,
    forgetting,
    format_report,
)

SETS = ["test_er:er_iemocap", "test_asr:asr_librispeech", "test_ic:ic_slurp"]
METRIC = {"er_iemocap": ("accuracy", True), "asr_librispeech": ("wer", False)}
METRIC["ic_slurp"] = ("accuracy", True)
# system -> per point (start, epoch 1, epoch 2): (ER acc, ASR WER, IC acc); new data: ASR
VALUES = {
    "masked_q2": [(70, 20, 80), (71, 15, 79), (69, 12, 78)],
    "dense": [(72, 18, 82), (60, 14, 70), (50, 10, 62)],
}


def write_score(d, task, value):
    name, higher = METRIC[task]
    (d / "score").mkdir(parents=True)
    (d / "score" / "result.json").write_text(
        json.dumps(dict(name=name, value=value, n=3, higher_is_better=higher))
    )


@pytest.fixture
def systems(tmp_path):
    out = []
    for name, points in VALUES.items():
        start, exp = tmp_path / f"start_{name}", tmp_path / name
        exp.mkdir()
        (exp / "config.yaml").write_text(yaml.safe_dump({"num_iters_per_epoch": 5}))
        for i, values in enumerate(points):
            for item, v in zip(SETS, values):
                dset, task = item.split(":")
                base = start if i == 0 else exp / "curve" / f"ep{i}"
                write_score(base / f"decode_{dset}", task, float(v))
        out.append(ContinualSystem(name, start, exp))
    return out


def test_series_report_and_verdict(systems):
    rows, tasks = collect_series(systems, SETS)
    assert len(rows) == 2 * 3 * 3
    assert {r["step"] for r in rows} == {0, 5, 10}
    assert tasks["asr_librispeech"] == dict(metric="wer", higher_is_better=False)
    dense_er = [
        r["value"] for r in rows if r["system"] == "dense" and r["task"] == "er_iemocap"
    ]
    assert dense_er == [72.0, 60.0, 50.0]
    text, summary = format_report("asr", "asr_librispeech", "train_cl_asr", rows, tasks)
    # masked: ER 70 -> 69 (1), IC 80 -> 78 (2): forgetting 1.5; dense: 22 and 20 -> 21.
    assert summary["forgetting"] == {"masked_q2": 1.5, "dense": 21.0}
    assert summary["gain"] == {"masked_q2": 8.0, "dense": 8.0}  # WER down 8 points
    assert summary["verdicts"] == [
        dict(masked="masked_q2", dense="dense", masked_forgot_less=True)
    ]
    assert "|masked_q2|70.0 → 69.0|20.0 → 12.0|80.0 → 78.0|+8.0|+1.5|" in text
    assert "- masked_q2 forgot less than dense: +1.5 vs +21.0 points." in text


def test_forgetting_needs_another_task():
    with pytest.raises(DataError, match="no task besides"):
        forgetting({"a": (1.0, 2.0)}, {"a": {"higher_is_better": True}}, "a")


def test_missing_checkpoint_scores_are_named(systems, tmp_path):
    (
        systems[0].exp / "curve" / "ep2" / "decode_test_ic" / "score" / "result.json"
    ).unlink()
    with pytest.raises(DataError, match="ep2/decode_test_ic/score/result.json"):
        collect_series(systems, SETS)
    with pytest.raises(DataError, match="NAME:START_EXP:EXP"):
        ContinualSystem.parse("dense:only_two")
