"""Table 1 from mask files and score files: exact Param% One / All and the layout."""

import json

import pytest
import torch
from conftest import run_module

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.storage import save_masks

TASKS = ["er_iemocap", "asr_librispeech"]
SETS = ["test_er:er_iemocap", "test_asr:asr_librispeech"]


def keep(lo, hi):
    m = torch.zeros(10, dtype=torch.bool)
    m[lo:hi] = True
    return {"w": m}


def write_score(decode_dir, name, value, higher=True):
    (decode_dir / "score").mkdir(parents=True)
    (decode_dir / "score" / "result.json").write_text(
        json.dumps(dict(name=name, value=value, n=3, higher_is_better=higher))
    )


@pytest.fixture
def run(tmp_path):
    # 10 prunable weights in a model of 20: One = (kept + 10) / 20.
    multi = MaskSet(
        {"w": (10,)}, {"er_iemocap": keep(0, 6), "asr_librispeech": keep(2, 8)}, 20
    )
    agnostic = MaskSet({"w": (10,)}, {t: keep(0, 6) for t in TASKS}, 20)
    save_masks(multi, tmp_path / "mt_masks")
    save_masks(agnostic, tmp_path / "ta_masks")
    values = {
        "dense": (70.0, 10.0),
        "mt": (72.0, 11.0),
        "st": (71.0, 12.0),
        "ta": (69.0, 13.0),
    }
    for system, (acc, wer) in values.items():
        for dset, task, v, name, higher in (
            ("test_er", "er_iemocap", acc, "accuracy", True),
            ("test_asr", "asr_librispeech", wer, "wer", False),
        ):
            d = (
                tmp_path
                / system
                / (f"{task}/decode_{dset}" if system == "st" else f"decode_{dset}")
            )
            write_score(d, name, v, higher)
    return tmp_path


def test_table_values(run):
    args = ["--dense", str(run / "dense")]
    for s in SETS:
        args += ["--test_set", s]
    for kind, exp, masks in (
        ("task_agnostic", "ta", "ta_masks"),
        ("multi_task", "mt", "mt_masks"),
        ("single_task", "st", "mt_masks"),
    ):
        args += ["--system", f"{kind}:2:{run / exp}:{run / masks}"]
    args += ["--json", str(run / "t.json"), "--markdown", str(run / "t.md")]
    args += ["--table2_level", "2", "--table2_markdown", str(run / "t2.md")]
    proc = run_module("espnet_pruning.bin.uslu_pruning_table", *args)
    table = json.loads((run / "t.json").read_text())
    rows = [
        (r["system"], r["param_one"], r["param_all"], r["scores"])
        for r in table["rows"]
    ]
    assert rows == [
        (
            "UniverSLU dense",
            100.0,
            100.0,
            {"er_iemocap": 70.0, "asr_librispeech": 10.0},
        ),
        ("Multi-task", 80.0, 90.0, {"er_iemocap": 72.0, "asr_librispeech": 11.0}),
        ("Single-task", 80.0, 160.0, {"er_iemocap": 71.0, "asr_librispeech": 12.0}),
        ("+Task-agnostic", 80.0, 80.0, {"er_iemocap": 69.0, "asr_librispeech": 13.0}),
    ]
    assert table["rows"][1]["sparsity"] == pytest.approx(40.0)
    md = (run / "t.md").read_text()
    assert proc.stdout.startswith(md)
    t2 = (run / "t2.md").read_text()
    assert "|+Multi-task pruning|80.0 / 90.0|72.0|11.0|" in t2
    assert "|+Single-task pruning|80.0 / 160.0|71.0|12.0|" in t2
    assert "Task-agnostic" not in t2 and "(Table 2)" in t2
    assert "|Multi-task|80.0 / 90.0|72.0|11.0|" in md
    assert "|er_iemocap accuracy↑|asr_librispeech wer↓|" in md
    assert "Q = 2 (40.0 %)" in md


def test_missing_score_names_the_file(run):
    proc = run_module(
        "espnet_pruning.bin.uslu_pruning_table",
        "--dense",
        str(run / "nowhere"),
        "--test_set",
        SETS[0],
        check=False,
    )
    assert proc.returncode == 1
    assert (
        f"ERROR: {run / 'nowhere' / 'decode_test_er' / 'score' / 'result.json'}"
        in proc.stderr
    )


def test_task_agnostic_masks_must_be_one_mask(run):
    proc = run_module(
        "espnet_pruning.bin.uslu_pruning_table",
        "--dense",
        str(run / "dense"),
        "--test_set",
        SETS[0],
        "--system",
        f"task_agnostic:2:{run / 'mt'}:{run / 'mt_masks'}",
        check=False,
    )
    assert proc.returncode == 1 and "mt_masks" in proc.stderr
