"""WER through NIST sclite, checked against a pure-Python Levenshtein alignment."""

import random
from typing import List, Tuple

import editdistance
import pytest

from espnet_pruning.scoring import METRICS, ScoringError, normalize_for_wer
from espnet_pruning.scoring import sclite as sclite_module
from espnet_pruning.scoring.sclite import find_sclite, parse_sclite_counts


def _has_sclite() -> bool:
    try:
        find_sclite()
        return True
    except ScoringError:
        return False


needs_sclite = pytest.mark.skipif(
    not _has_sclite(), reason="NIST sclite missing (Debian/Ubuntu package sctk)"
)


def levenshtein_sdi(
    ref: List[str], hyp: List[str], w_sub: int = 4, w_del: int = 3, w_ins: int = 3
) -> Tuple[int, int, int]:
    """(S, D, I) of a minimum-cost alignment (dynamic programming with backtrace).

    The default weights are sclite's (correct 0, substitution 4, deletion and insertion
    3), which prefer a deletion plus an insertion to two substitutions where the plain
    edit count ties.
    """
    rows, cols = len(ref) + 1, len(hyp) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i * w_del
    for j in range(cols):
        cost[0][j] = j * w_ins
    for i in range(1, rows):
        for j in range(1, cols):
            diag = cost[i - 1][j - 1] + (w_sub if ref[i - 1] != hyp[j - 1] else 0)
            cost[i][j] = min(diag, cost[i - 1][j] + w_del, cost[i][j - 1] + w_ins)
    s = d = n_ins = 0
    i, j = len(ref), len(hyp)
    while i > 0 or j > 0:
        wrong = i > 0 and j > 0 and ref[i - 1] != hyp[j - 1]
        if (
            i > 0
            and j > 0
            and cost[i][j] == cost[i - 1][j - 1] + (w_sub if wrong else 0)
        ):
            s, i, j = s + wrong, i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + w_del:
            d, i = d + 1, i - 1
        else:
            n_ins, j = n_ins + 1, j - 1
    return s, d, n_ins


REFS = {
    "1272-128104-0000": "TURN ON THE LIGHTS IN THE KITCHEN",
    "u2": "SET AN ALARM",
    "u3": "HELLO WORLD",
    "u4": "DON'T STOP",
}
HYPS = {
    "1272-128104-0000": "<|en|> <|asr|> turn off the lights in kitchen please",
    "u2": "<|en|><|asr|>set an alarm",
    # u3 missing -> empty hypothesis
    "u4": "Don\u2019t stop!",
}


@needs_sclite
def test_wer_hand_computed(tmp_path):
    result = METRICS["wer"](REFS, HYPS, tmp_path)
    # u1: ON->OFF (S), THE deleted (D), PLEASE inserted (I): S 1 D 1 I 1 of 7 words
    # u2: prompt tokens stripped, case normalised: 0 errors of 3
    # u3: missing: D 2 of 2
    # u4: apostrophe and "!" normalised: 0 of 2
    # N = 14, S + D + I = 1 + 3 + 1 = 5, WER = 100 * 5 / 14 = 35.714 %
    assert result.value == pytest.approx(100 * 5 / 14)
    d = result.details
    assert (d["n_words"], d["n_sub"], d["n_del"], d["n_ins"]) == (14, 1, 3, 1)
    assert d["n_correct"] == 14 - 1 - 3
    assert d["n_sentence_err"] == 2 and d["ser"] == pytest.approx(50.0)
    assert d["n_missing"] == 1
    assert not result.higher_is_better

    # Same counts from a pure-Python alignment of the normalised words; its error total
    # equals the plain edit distance (u1: ON->OFF, THE deleted, PLEASE inserted = 3; the
    # alternative THE->KITCHEN, KITCHEN->PLEASE also costs 3 edits but 8 > 6 in weight).
    sdi = [0, 0, 0]
    for u, ref in REFS.items():
        r = normalize_for_wer(ref).split()
        h = normalize_for_wer(
            HYPS.get(u, "").replace("<|en|>", "").replace("<|asr|>", "")
        )
        for k, v in enumerate(levenshtein_sdi(r, h.split())):
            sdi[k] += v
        assert sum(levenshtein_sdi(r, h.split())) == editdistance.eval(r, h.split())
    assert tuple(sdi) == (1, 3, 1)

    # Files kept in the work directory, ids as (spk-uttid).
    ref_trn = (tmp_path / "ref.trn").read_text().splitlines()
    hyp_trn = (tmp_path / "hyp.trn").read_text().splitlines()
    assert ref_trn[0] == "TURN ON THE LIGHTS IN THE KITCHEN\t(spk-1272-128104-0000)"
    assert hyp_trn[2] == "\t(spk-u3)"
    assert "<|" not in "".join(hyp_trn)
    assert "Sum" in (tmp_path / "result.txt").read_text()


@needs_sclite
def test_wer_matches_editdistance_on_random_sentences():
    rng = random.Random(0)
    vocab = ["A", "B", "C", "D"]
    refs, hyps = {}, {}
    for k in range(40):
        refs[f"u{k:02d}"] = " ".join(rng.choices(vocab, k=rng.randint(1, 8)))
        hyps[f"u{k:02d}"] = " ".join(rng.choices(vocab, k=rng.randint(0, 8)))
    errors = sum(editdistance.eval(refs[u].split(), hyps[u].split()) for u in refs)
    n_words = sum(len(r.split()) for r in refs.values())
    result = METRICS["wer"](refs, hyps)
    assert result.details["n_words"] == n_words
    assert result.value == pytest.approx(100 * errors / n_words)
    assert result.details["workdir"] is None


@needs_sclite
def test_wer_rejects_parenthesis_in_id():
    with pytest.raises(ScoringError, match="parenthesis"):
        METRICS["wer"]({"a(1)": "X"}, {})


def test_wer_without_reference_words():
    with pytest.raises(ScoringError, match="no words"):
        METRICS["wer"]({"u1": "...", "u2": ""}, {})


def test_sclite_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sclite_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(sclite_module, "SCTK_DIR", tmp_path)
    with pytest.raises(ScoringError, match="install the Debian/Ubuntu package 'sctk'"):
        METRICS["wer"]({"u": "X"}, {"u": "X"})


def test_parse_sclite_counts():
    report = """
        | SPKR | # Snt # Wrd | Corr    Sub    Del    Ins    Err  S.Err |
        | Sum/Avg|    3      9 | 66.7   11.1   22.2   11.1   44.4  100.0 |
        | Sum  |    3      9 |    6      1      2      1      4      3 |
        | Mean |  3.0    9.0 |  6.0    1.0    2.0    1.0    4.0    3.0 |
    """
    counts = parse_sclite_counts(report)
    assert (counts.n_sentences, counts.n_words, counts.n_correct) == (3, 9, 6)
    assert (counts.n_sub, counts.n_del, counts.n_ins) == (1, 2, 1)
    assert (counts.n_err, counts.n_sentence_err) == (4, 3)
    with pytest.raises(ScoringError):
        parse_sclite_counts("| Sum/Avg| 3 9 | 66.7 11.1 22.2 11.1 44.4 100.0 |")
