"""MAPSSWE matched-pairs test: hand-computed statistics, error counts, the CLI."""

import json
import math

import pytest
from conftest import run_module

from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.significance import matched_pairs, utterance_errors


def test_hand_computed_statistic():
    # Z = A - B = [1, 0, 0, 2, -1, 3]: mean 5/6; squared deviations sum
    # (1/6)^2 + 2 (5/6)^2 + (7/6)^2 + (11/6)^2 + (13/6)^2 = 390/36 -> var 390/180,
    # std 1.471960; W = (5/6) / (1.471960 / sqrt 6) = 1.386750; p = erfc(W / sqrt 2).
    r = matched_pairs([2, 1, 0, 3, 0, 4], [1, 1, 0, 1, 1, 1])
    assert (r.n, r.errors_a, r.errors_b) == (6, 10, 5)
    assert r.mean == pytest.approx(5 / 6)
    assert r.std == pytest.approx(math.sqrt(390 / 180))
    assert r.w == pytest.approx(1.386750, abs=1e-6)
    assert r.p == pytest.approx(0.165518, abs=1e-6)
    assert r.better == "B"


def test_edge_cases():
    same = matched_pairs([1, 0, 2], [1, 0, 2])
    assert (same.w, same.p, same.better) == (0.0, 1.0, "same")
    always = matched_pairs([0, 0, 0], [1, 1, 1])  # A better on every segment
    assert (always.w, always.p, always.better) == (-math.inf, 0.0, "A")
    with pytest.raises(ScoringError, match="2 or more"):
        matched_pairs([1], [0])
    with pytest.raises(ScoringError, match="3 vs 2"):
        matched_pairs([1, 0, 0], [0, 1])


def test_error_counts_per_utterance():
    refs = {"u1": "turn on the light", "u2": "Go home.", "u3": "stop"}
    hyps_a = {"u1": "turn the lights", "u2": "go home"}  # u3 missing: empty
    hyps_b = {"u1": "turn on the light", "u2": "go to home", "u3": "stop"}
    ids, a, b = utterance_errors("wer", refs, hyps_a, hyps_b)
    assert ids == ["u1", "u2", "u3"]
    assert a == [
        2,
        0,
        1,
    ]  # deletion + substitution; punctuation/case normalised; deletion
    assert b == [0, 1, 0]
    refs = {"u1": "in:play_music SEP play", "u2": "in:stop SEP stop"}
    _, a, b = utterance_errors(
        "accuracy", refs, {"u1": "in:play_music", "u2": "in:play"}, {"u2": "in:stop"}
    )
    assert (a, b) == ([0, 1], [1, 0])
    with pytest.raises(ScoringError, match="no reference"):
        utterance_errors("wer", refs, {"x": "a"}, {})


def test_cli_pairs_table_and_errors(tmp_path):
    ref, ha, hb = (tmp_path / n for n in ("ref", "a", "b"))
    ref.write_text("u1 A B C\nu2 D E\nu3 F\nu4 G H\n")
    ha.write_text("u1 A B C\nu2 D E\nu3 F\nu4 G H\n")
    hb.write_text("u1 A X\nu2 D\nu3 Q\nu4 G H\n")
    proc = run_module(
        "espnet_pruning.bin.uslu_significance",
        "--pair",
        f"asr:wer:{ref}:{ha}:{hb}",
        "--name_a",
        "multi",
        "--name_b",
        "agnostic",
        "--json",
        str(tmp_path / "s.json"),
    )
    out = json.loads((tmp_path / "s.json").read_text())["results"][0]
    # Z = [-2, -1, -1, 0]: mean -1, std sqrt(2/3), W = -1 / (0.8165 / 2) = -2.449490
    assert (out["errors_a"], out["errors_b"], out["better"]) == (0, 4, "A")
    assert out["w"] == pytest.approx(-2.449490, abs=1e-6)
    assert "|asr|wer|0|4|4|-2.45|0.0143|multi|" in proc.stdout
    bad = run_module(
        "espnet_pruning.bin.uslu_significance",
        "--pair",
        f"asr:bleu:{ref}:{ha}:{hb}",
        check=False,
    )
    assert bad.returncode == 1 and "ERROR: --pair" in bad.stderr
    missing = run_module(
        "espnet_pruning.bin.uslu_significance",
        "--metric",
        "wer",
        "--ref",
        str(ref),
        "--hyp_a",
        str(tmp_path / "none"),
        "--hyp_b",
        str(hb),
        check=False,
    )
    assert missing.returncode == 1 and str(tmp_path / "none") in missing.stderr
