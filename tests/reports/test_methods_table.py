"""The mask methods compared: rows, overlap, forgetting, and errors naming the file."""

import json

import pytest

from espnet_pruning.bin.uslu_methods_table import main
from espnet_pruning.errors import DataError
from espnet_pruning.reports.methods_table import (
    MethodResults,
    build_methods_table,
    format_methods_markdown,
    mean_overlap,
)

TASKS = [
    {"task": "asr", "test_set": "test_asr", "metric": "wer", "higher_is_better": False},
    {"task": "er", "test_set": "test_er", "metric": "acc", "higher_is_better": True},
]


def _row(kind, level, one, all_, asr, er):
    return dict(
        system=kind,
        kind=kind,
        level=level,
        sparsity=0.0 if level == 0 else 36.0,
        param_one=one,
        param_all=all_,
        scores={"asr": asr, "er": er},
    )


def _write_method(root, overlap, union, forgetting=None):
    rows = [
        _row("dense", 0, 100.0, 100.0, 10.0, 70.0),
        _row("multi_task", 2, 70.0, 90.0, 12.0, 65.0),
        _row("task_agnostic", 2, 70.0, 70.0, 13.0, 60.0),
    ]
    root.mkdir(parents=True)
    (root / "pruning_table.json").write_text(json.dumps({"tasks": TASKS, "rows": rows}))
    report = root / "find_masks" / "multi_task" / "round2" / "report.json"
    report.parent.mkdir(parents=True)
    matrix = [[1.0, overlap], [overlap, 1.0]]
    report.write_text(
        json.dumps({"overlap": {"overall": matrix}, "union_ratio": union})
    )
    if forgetting is not None:
        cl = root / "continual_asr" / "report.json"
        cl.parent.mkdir(parents=True)
        cl.write_text(
            json.dumps({"forgetting": {"masked_q2": forgetting, "dense": 9.0}})
        )


def test_one_row_per_method_and_level_after_the_dense_row(tmp_path):
    _write_method(tmp_path / "exp", 0.8, 0.95, forgetting=1.5)
    _write_method(tmp_path / "exp" / "parp", 0.9, 0.85)
    hc = tmp_path / "exp" / "hard_concrete"
    _write_method(hc, 0.7, 0.99)
    speed = {"encoder_speedup": 1.5, "decoder_speedup": 1.25}
    (hc / "structure_speed_q2.json").write_text(json.dumps({"mean": speed}))
    table = build_methods_table(
        [
            MethodResults.parse(f"imp_lth:{tmp_path / 'exp'}"),
            MethodResults.parse(f"parp:{tmp_path / 'exp' / 'parp'}"),
            MethodResults.parse(f"hard_concrete:{hc}"),
        ],
        ["asr"],
    )
    assert [(r["method"], r["level"]) for r in table["rows"]] == [
        ("dense", 0),
        ("imp_lth", 2),
        ("parp", 2),
        ("hard_concrete", 2),
    ]
    imp, parp, structured = table["rows"][1:]
    assert imp["speedup"] is None
    assert structured["speedup"] == {"encoder": 1.5, "decoder": 1.25}
    assert (imp["overlap"], imp["union_ratio"], imp["forgetting"]) == (
        0.8,
        0.95,
        {"asr": 1.5},
    )
    assert parp["forgetting"] == {"asr": None}  # no continual run of parp
    assert parp["scores"] == {"asr": 12.0, "er": 65.0}
    text = format_methods_markdown(table)
    assert "|imp_lth|2|70.0 / 90.0|12.0|65.0|80.0|95.0|+1.50|–|" in text
    assert "|parp|2|70.0 / 90.0|12.0|65.0|90.0|85.0|–|–|" in text
    assert "|hard_concrete|2|70.0 / 90.0|12.0|65.0|70.0|99.0|–|1.50× / 1.25×|" in text
    assert "|dense|0|100.0 / 100.0|10.0|70.0|–|–|–|–|" in text
    assert "|method|Q|Param(%) One / All|asr wer↓|er acc↑|overlap (%)|" in text


def test_mean_overlap_of_three_tasks():
    matrix = [[1, 0.5, 0.2], [0.5, 1, 0.2], [0.2, 0.2, 1]]
    assert mean_overlap({"overlap": {"overall": matrix}}) == 0.3
    assert mean_overlap({"overlap": {"overall": [[1.0]]}}) is None


def test_a_missing_result_is_one_error_line(tmp_path, capsys):
    _write_method(tmp_path / "exp", 0.8, 0.95)
    with pytest.raises(SystemExit) as e:
        main(
            [
                "--method",
                f"imp_lth:{tmp_path / 'exp'}",
                "--method",
                f"parp:{tmp_path}/no",
            ]
        )
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ERROR: {tmp_path}/no/pruning_table.json: not found (run its stage first)"
    ]
    with pytest.raises(DataError, match="expected METHOD:DIR"):
        MethodResults.parse("parp")
