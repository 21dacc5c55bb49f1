"""MAPSSWE matched-pairs test: hand-computed statistics, sclite's alignment, sc_stats'
segmentation (checked against sctk itself when installed), the command line."""

import json
import math
import random
import re
import shutil
import subprocess

import pytest

from espnet_pruning.bin.uslu_significance import main
from espnet_pruning.reports.significance import (
    TooFewSegmentsError,
    align_words,
    compare_systems,
    mapsswe_segments,
    matched_pairs,
    segment_errors,
    utterance_errors,
)
from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.sclite import SCTK_DIR, write_trn


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
    assert (r.better, r.small_sample) == ("B", True)
    # Z = [1, 1, 1, -1]: mean 1/2, deviations (1/2, 1/2, 1/2, -3/2) -> var 3/3 = 1,
    # W = (1/2) / (1 / 2) = 1, p = 2 (1 - Phi(1)) = 0.3173105.
    r = matched_pairs([1, 2, 1, 0], [0, 1, 0, 1])
    assert (r.mean, r.std, r.w) == (0.5, 1.0, 1.0)
    assert r.p == pytest.approx(0.3173105, abs=1e-7)
    # Z = [-2, 0, -2, 0]: mean -1, var 4/3, W = -1 / (sqrt(4/3) / 2) = -sqrt 3,
    # p = erfc(sqrt(3/2)) = 0.0832645; A has fewer errors.
    r = matched_pairs([0, 1, 0, 1], [2, 1, 2, 1])
    assert r.w == pytest.approx(-math.sqrt(3)) and r.better == "A"
    assert r.p == pytest.approx(0.0832645, abs=1e-7)
    # 15 segments with Z = 1 and one with Z = 0: mean 15/16, var (15/256 + 225/256)/15
    # = 1/16, W = (15/16) / ((1/4) / 4) = 15, p = erfc(15 / sqrt 2) ~ 7.3e-51 < 0.001.
    r = matched_pairs([1] * 15 + [0], [0] * 16)
    assert r.w == pytest.approx(15.0) and 0 < r.p < 1e-50


def test_edge_cases():
    same = matched_pairs([1, 0, 2], [1, 0, 2])
    assert (same.w, same.p, same.better) == (0.0, 1.0, "same")
    empty = matched_pairs([], [])  # no segment: both systems perfect under MAPSSWE
    assert (empty.n, empty.mean, empty.w, empty.p, empty.better) == (
        0,
        0.0,
        0.0,
        1.0,
        "same",
    )
    always = matched_pairs([0, 0, 0], [1, 1, 1])  # variance 0 (sc_stats prints Z = 0)
    assert (always.w, always.p, always.better) == (-math.inf, 0.0, "A")
    with pytest.raises(TooFewSegmentsError, match="2 or more"):
        matched_pairs([1], [0])
    assert matched_pairs([1], [1]).p == 1.0
    with pytest.raises(ScoringError, match="3 vs 2"):
        matched_pairs([1, 0, 0], [0, 1])
    assert matched_pairs([1] * 30, [0] * 29 + [1]).small_sample is False


def test_sclite_alignment_by_hand():
    # Costs 0 / 3 (ins, del) / 4 (sub); at equal cost match/sub, then del, then ins.
    assert align_words("G H I".split(), "G H I I".split()) == tuple("CCIC")
    # "A B C" vs "A X": D then S (cost 7) ties S then D; the last cell prefers S.
    assert align_words("A B C".split(), "A X".split()) == tuple("CDS")
    assert align_words([], ["A"]) == ("I",) and align_words(["A"], []) == ("D",)
    assert align_words([], []) == ()
    # A substitution (4) is cheaper than a deletion plus an insertion (6).
    assert align_words("A B".split(), "A C".split()) == tuple("CS")


def test_mapsswe_segments_by_hand():
    # The four utterances of a run of sclite + sc_stats (see test below): segments
    # close after two words both systems get right; segments without error vanish.
    assert mapsswe_segments("CSCCCC", "CCCCSC") == [(1, 0), (0, 1)]
    assert mapsswe_segments("CCIC", "CDC") == [(1, 1)]
    assert mapsswe_segments("CCDC", "CICCC") == [(1, 1)]
    assert mapsswe_segments("CC", "CS") == [(0, 1)]
    assert mapsswe_segments("CCC", "CCC") == []
    assert mapsswe_segments("CC", "CCI") == [(0, 1)]  # B's trailing insertion counts
    assert mapsswe_segments("SCCCS", "CCCCC") == [(1, 0), (1, 0)]
    assert mapsswe_segments("SCS", "CCC") == [(2, 0)]  # one correct word: no cut
    assert mapsswe_segments("SCS", "CCC", min_good=1) == [(1, 0), (1, 0)]


def test_segments_of_texts():
    refs = {"u1": "a b c d e f", "u2": "g h i", "u3": "j k l m", "u4": "n o"}
    hyps_a = {"u1": "a x c d e f", "u2": "g h i i", "u3": "j k m", "u4": "n o"}
    hyps_b = {"u1": "a b c d q f", "u2": "g i", "u3": "j z k l m", "u4": "n p"}
    # Z = [1, -1, 0, 0, -1] -> mean -0.2, var 2.8/4 = 0.7, W = -0.2 / sqrt(0.7 / 5)
    # = -0.534522 (sc_stats: "# segs: 5", "mean: -0.200", "std dev: 0.837",
    # "Z Stat: -0.535").
    result, seg = compare_systems("wer", refs, hyps_a, hyps_b)
    assert seg.uttids == ("u1", "u1", "u2", "u3", "u4") and seg.n_utterances == 4
    assert (seg.errors_a, seg.errors_b) == ((1, 0, 1, 1, 0), (0, 1, 1, 1, 1))
    assert result.w == pytest.approx(-0.2 / math.sqrt(0.7 / 5))
    assert result.std == pytest.approx(math.sqrt(0.7))
    per_utt = segment_errors("wer", refs, hyps_a, hyps_b, segmentation="utterance")
    assert (per_utt.errors_a, per_utt.errors_b) == ((1, 1, 1, 0), (1, 1, 1, 1))
    # Classification: an utterance is one word (its label); MAPSSWE keeps the ones on
    # which at least one system is wrong, a missing hypothesis is a deletion.
    refs = {"u1": "in:a SEP x", "u2": "in:b SEP y", "u3": "in:c", "u4": "in:d"}
    hyps_a = {"u1": "in:a", "u2": "in:x", "u3": "in:c"}
    hyps_b = {"u1": "in:a SEP zz", "u2": "in:b", "u3": "in:q", "u4": "in:d"}
    seg = segment_errors("accuracy", refs, hyps_a, hyps_b)
    assert seg.uttids == ("u2", "u3", "u4")
    assert (seg.errors_a, seg.errors_b) == ((1, 0, 1), (0, 1, 0))
    ids, a, b = utterance_errors("accuracy", refs, hyps_a, hyps_b)
    assert (ids, a, b) == (["u1", "u2", "u3", "u4"], [0, 1, 0, 1], [0, 0, 1, 0])
    with pytest.raises(ScoringError, match="no reference"):
        segment_errors("wer", refs, {"x": "a"}, {})
    with pytest.raises(ScoringError, match="segmentation"):
        segment_errors("wer", refs, {}, {}, segmentation="words")


def test_utterance_errors_normalised_like_wer():
    refs = {"u1": "turn on the light", "u2": "Go home.", "u3": "stop"}
    hyps_a = {"u1": "turn the lights", "u2": "<|en|> go home"}  # u3 missing: empty
    hyps_b = {"u1": "turn on the light", "u2": "go to home", "u3": "stop"}
    ids, a, b = utterance_errors("wer", refs, hyps_a, hyps_b)
    # deletion + substitution; case, punctuation and prompt tokens ignored; deletion
    assert (ids, a, b) == (["u1", "u2", "u3"], [2, 0, 1], [0, 1, 0])


def _sctk_tool(name):
    return shutil.which(name) or (
        str(SCTK_DIR / name) if (SCTK_DIR / name).is_file() else None
    )


@pytest.mark.skipif(
    _sctk_tool("sclite") is None or _sctk_tool("sc_stats") is None,
    reason="sctk (sclite, sc_stats) not installed",
)
def test_matches_sc_stats(tmp_path):
    rng = random.Random(7)
    vocab = "A B C D E".split()

    def noisy(words):
        out = [rng.choice(vocab)] if rng.random() < 0.1 else []
        for w in words:
            x = rng.random()
            if x < 0.1:
                continue
            out.append(rng.choice(vocab) if x < 0.2 else w)
            if rng.random() < 0.1:
                out.append(rng.choice(vocab))
        return out

    ref_words = [
        [rng.choice(vocab) for _ in range(rng.randint(0, 9))] for _ in range(60)
    ]
    ids = [f"u{i:02d}" for i in range(60)]
    texts = {"ref": ref_words, "a": [noisy(r) for r in ref_words]}
    texts["b"] = [noisy(r) for r in ref_words]
    for name, words in texts.items():
        write_trn(tmp_path / f"{name}.trn", ids, [" ".join(w) for w in words])
    cmd = [_sctk_tool("sclite"), "-r", str(tmp_path / "ref.trn"), "trn"]
    cmd += ["-h", str(tmp_path / "a.trn"), "trn", "sysA"]
    cmd += ["-h", str(tmp_path / "b.trn"), "trn", "sysB"]
    cmd += ["-i", "rm", "-s", "-o", "sgml", "-O", str(tmp_path)]
    subprocess.run(cmd, capture_output=True, check=True)
    sgml = {s: (tmp_path / f"{s}.trn.sgml").read_text() for s in ("a", "b")}
    # Our alignment is sclite's, slot by slot.
    for system, words in (("a", texts["a"]), ("b", texts["b"])):
        paths = re.findall(
            r'<PATH id="\(spk-(\w+)\)"[^>]*>\n(.*?)</PATH>', sgml[system], re.S
        )
        assert len(paths) == 60
        for (uttid, body), ref, hyp in zip(paths, ref_words, words):
            slots = [x.split(",")[0] for x in body.strip().split(":") if x]
            assert tuple(slots) == align_words(ref, hyp), uttid
    subprocess.run(
        [_sctk_tool("sc_stats"), "-p", "-t", "mapsswe", "-v", "-n", "res"]
        + ["-O", str(tmp_path)],
        input=sgml["a"] + sgml["b"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = (tmp_path / "res.stats.mapsswe").read_text()
    m = re.search(
        r"\(# segs: (\d+)\).*\(mean: (\S+)\) \(std dev: (\S+)\) \(Z Stat: (\S+)\)",
        report,
    )
    as_dict = {k: dict(zip(ids, (" ".join(w) for w in v))) for k, v in texts.items()}
    result, _ = compare_systems("wer", as_dict["ref"], as_dict["a"], as_dict["b"])
    assert result.n == int(m.group(1)) and result.n > 30
    assert f"{result.mean:.3f}" == m.group(2)
    assert f"{result.std:.3f}" == m.group(3)
    assert f"{result.w:.3f}" == m.group(4)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _main(capsys, *args):
    """Run the command line in-process: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_single_comparison_and_pairs(tmp_path, capsys):
    ref = _write(tmp_path / "ref", "u1 A B C\nu2 D E\nu3 F\nu4 G H\n")
    ha = _write(tmp_path / "a", "u1 A B C\nu2 D E\nu3 F\nu4 G H\n")
    hb = _write(tmp_path / "b", "u1 A X\nu2 D\nu3 Q\nu4 G H\n")
    out_json = tmp_path / "s.json"
    code, out, _ = _main(
        capsys, "--metric", "wer", "--ref", ref, "--hyp_a", ha, "--hyp_b", hb,
        "--name_a", "multi", "--name_b", "agnostic", "--output_json", str(out_json),
    )  # fmt: skip
    assert code == 0
    r = json.loads(out_json.read_text())["results"][0]
    # Segments u1, u2, u3 (u4 right in both): Z = [-2, -1, -1], mean -4/3,
    # var (4/9 + 1/9 + 1/9) / 2 = 1/3, W = (-4/3) / (sqrt(1/3) / sqrt 3) = -4,
    # p = erfc(4 / sqrt 2) = 6.334e-05.
    assert (r["n_utterances"], r["n"], r["errors_a"], r["errors_b"]) == (4, 3, 0, 4)
    assert r["w"] == pytest.approx(-4.0) and r["better"] == "A"
    assert r["p"] == pytest.approx(6.334248e-05, rel=1e-6)
    assert "|4|3|0|4|-1.333|-4.00|6.33e-05|multi|fewer than 30 segments|" in out
    # Per utterance: Z = [-2, -1, -1, 0], W = -1 / (sqrt(2/3) / 2) = -2.449490.
    code, out, _ = _main(
        capsys, "--pair", f"Q=2 asr:wer:{ref}:{ha}:{hb}", "--segmentation",
        "utterance", "--pair", f"one:wer:{ref}:{ha}:{ha}", "--json", str(out_json),
    )  # fmt: skip
    rows = json.loads(out_json.read_text())["results"]
    assert code == 0 and [r["label"] for r in rows] == ["Q=2 asr", "one"]
    assert rows[0]["w"] == pytest.approx(-2.449490, abs=1e-6)
    assert "|Q=2 asr|wer|4|4|0|4|-1.000|-2.45|0.0143|A|" in out
    assert rows[1]["p"] == 1.0 and rows[1]["better"] == "same"


def test_cli_flags_too_few_segments(tmp_path, capsys):
    ref = _write(tmp_path / "ref", "u1 in:a\nu2 in:b\n")
    ha = _write(tmp_path / "a", "u1 in:a\nu2 in:x\n")
    hb = _write(tmp_path / "b", "u1 in:a\nu2 in:b\n")
    code, out, _ = _main(
        capsys, "--metric", "accuracy", "--ref", ref, "--hyp_a", ha, "--hyp_b", hb
    )
    assert code == 0
    assert "|2|1|1|0|-|-|-|-|the matched-pairs test needs 2 or more segments" in out


def test_cli_bad_input_names_file_and_line(tmp_path, capsys):
    ref = _write(tmp_path / "ref", "u1 A B\nu2 C\nu3 D\n")
    good = _write(tmp_path / "good", "u1 A B\nu2 C\nu3 D\n")
    cases = [
        (_write(tmp_path / "h1", "u1 A B\nu2 C\n"), f"{ref}:3: utterance 'u3' has no"),
        (_write(tmp_path / "h2", "u1 A\nu2 C\nu3 D\nu9 E\n"), "h2:4: utterance 'u9'"),
        (_write(tmp_path / "h3", "u1 A\n\nu3 D\n"), "h3:2: empty line"),
        (str(tmp_path / "absent"), "absent"),
    ]
    for hyp, message in cases:
        code, _, err = _main(
            capsys, "--metric", "wer", "--ref", ref, "--hyp_a", good, "--hyp_b", hyp
        )
        assert code == 1 and err.startswith("ERROR: ") and message in err, err
    code, out, _ = _main(
        capsys, "--metric", "wer", "--ref", ref, "--hyp_a", good, "--hyp_b",
        cases[0][0], "--allow_missing", "--segmentation", "utterance",
    )  # fmt: skip
    assert code == 0 and "|3|3|0|1|" in out
    code, _, err = _main(capsys, "--pair", f"asr:bleu:{ref}:{good}:{good}")
    assert code == 1 and "ERROR: --pair" in err
    code, _, err = _main(capsys, "--metric", "wer", "--ref", ref)
    assert code == 1 and "go together" in err
