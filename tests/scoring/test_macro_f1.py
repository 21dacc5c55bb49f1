"""Macro-F1 over the union of predicted and reference labels."""

import pytest
from sklearn.metrics import f1_score

from espnet_pruning.scoring import METRICS

REFS = {"u1": "A x", "u2": "A y", "u3": "B", "u4": "B", "u5": "C"}
HYPS = {"u1": "A x", "u2": "B y", "u3": "B", "u4": "<|en|> B", "u5": "D"}


def test_macro_f1_with_spurious_label():
    result = METRICS["macro_f1"](REFS, HYPS)
    # labels = {A, B, C} | {A, B, D} = {A, B, C, D}
    # A: TP 1 (u1), FP 0, FN 1 (u2)   P = 1,   R = 1/2 F1 = 2*1*0.5/1.5   = 2/3
    # B: TP 2 (u3,u4), FP 1 (u2), FN 0 P = 2/3, R = 1   F1 = 2*(2/3)/(5/3) = 4/5
    # C: TP 0 -> F1 0;  D (spurious, never a reference): TP 0 -> F1 0
    # macro = (2/3 + 4/5 + 0 + 0) / 4 = (22/15) / 4 = 11/30 = 36.667 %
    assert result.value == pytest.approx(100 * 11 / 30)
    per = result.details["per_label"]
    assert sorted(per) == ["A", "B", "C", "D"]
    assert per["A"] == pytest.approx(
        {"tp": 1, "fp": 0, "fn": 1, "precision": 100, "recall": 50, "f1": 200 / 3}
    )
    assert per["B"]["f1"] == pytest.approx(80.0)
    assert per["D"] == {"tp": 0, "fp": 1, "fn": 0, "precision": 0, "recall": 0, "f1": 0}
    # Without the spurious D it would be (22/15) / 3 = 48.89 %.
    assert result.details["n_labels"] == 4


def test_macro_f1_matches_sklearn_on_union_of_labels():
    ref = [REFS[u].split()[0] for u in REFS]
    hyp = ["A", "B", "B", "B", "D"]
    expected = 100 * f1_score(ref, hyp, average="macro", zero_division=0)
    assert METRICS["macro_f1"](REFS, HYPS).value == pytest.approx(expected)


def test_macro_f1_empty_hypothesis_adds_no_class():
    result = METRICS["macro_f1"]({"u1": "A", "u2": "B"}, {"u1": "A"})
    # labels {A, B}: A F1 = 1; B: TP 0, FN 1 -> F1 0; macro = (1 + 0) / 2 = 50 %
    assert result.value == pytest.approx(50.0)
    assert result.details["n_labels"] == 2
    assert result.details["n_missing"] == 1
