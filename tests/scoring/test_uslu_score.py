"""The scoring entry point."""

import json

import pytest
from conftest import run_module

from espnet_pruning.bin.uslu_score import main
from espnet_pruning.scoring.sclite import find_sclite


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_accuracy_cli(tmp_path, capsys):
    ref = write(tmp_path / "ref", "u1 command:yes\nu2 command:no\nu3 command:up\n")
    hyp = write(tmp_path / "hyp", "u1 <|en|> <|scr|> command:yes\nu2 command:go\n")
    out = tmp_path / "score"
    main(["--metric", "accuracy", "--ref", str(ref), "--hyp", str(hyp),
          "--out_dir", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    # u3 missing, skipped by default: 1 correct of 2 -> 50 %
    assert (
        captured.out.strip() == "accuracy: 50.00 (n=2, 1 hypotheses missing (skipped))"
    )
    assert "1 of 3 references have no hypothesis (skipped)" in captured.err
    record = json.loads((out / "result.json").read_text())
    assert record["name"] == "accuracy"
    assert record["value"] == pytest.approx(50.0)
    assert record["n"] == 2 and record["higher_is_better"] is True
    assert (record["details"]["n_missing"], record["details"]["missing"]) == (1, "skip")
    assert record["ref"] == str(ref) and record["hyp"] == str(hyp)
    assert sorted(p.name for p in out.iterdir()) == ["result.json"]  # no temp file left
    # --missing empty: u3 scored as an empty hypothesis, 1 correct of 3 -> 33.33 %
    main(["--metric", "accuracy", "--ref", str(ref), "--hyp", str(hyp),
          "--out_dir", str(out), "--missing", "empty"])  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out.strip() == (
        "accuracy: 33.33 (n=3, 1 hypotheses missing (scored as empty))"
    )
    assert "1 of 3 references have no hypothesis (scored as empty)" in captured.err
    record = json.loads((out / "result.json").read_text())
    assert (record["n"], record["details"]["n_missing"]) == (3, 1)
    assert record["details"]["missing"] == "empty"


def test_slurp_figures_and_missing_policy(tmp_path, capsys):
    ic_ref = write(
        tmp_path / "ic_ref",
        "u1 alarm_set SEP wake me\nu2 iot_hue_lightup SEP lights\nu3 qa_factoid SEP x\n",
    )
    ic_hyp = write(tmp_path / "ic_hyp", "u1 alarm_query\nu2 iot_hue_lightup SEP y\n")
    ner_ref = write(tmp_path / "ner_ref", "u1 <entity:date> <FILL> tomorrow <SEP> a\n")
    ner_hyp = write(tmp_path / "ner_hyp", "u1 <entity:date> <FILL> <SEP> a\n")
    main(["--item", f"accuracy+slurp_intent:{ic_ref}:{ic_hyp}:{tmp_path / 'ic'}",
          "--item", f"slu_f1:{ner_ref}:{ner_hyp}:{tmp_path / 'ner'}"])  # fmt: skip
    out = capsys.readouterr().out
    # IC, u3 skipped: scenario right 2/2, action 1/2, intent 1/2
    assert (
        f"{tmp_path / 'ic'}: accuracy: 50.00 (n=2, 1 hypotheses missing (skipped)), "
        "scenario accuracy 100.00, action accuracy 50.00" in out
    )
    # NER, the empty filler at distance 1: SLU P = R = F1 = 50, word-F1 = char-F1 = 50
    assert (
        f"{tmp_path / 'ner'}: slu_f1: 50.00 (n=1), SLU precision 50.00, SLU recall "
        "50.00, word-F1 50.00, char-F1 50.00, span-F1 0.00" in out
    )
    details = json.loads((tmp_path / "ic" / "result.json").read_text())["details"]
    assert details["slurp_intent"] == {
        "scenario_accuracy": 100.0,
        "action_accuracy": 50.0,
        "intent_accuracy": 50.0,
        "n": 2,
    }
    main(["--metric", "accuracy", "--figures", "slurp_intent", "--missing", "empty",
          "--ref", str(ic_ref), "--hyp", str(ic_hyp),
          "--out_dir", str(tmp_path / "ic")])  # fmt: skip
    assert "scenario accuracy 66.67, action accuracy 33.33" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--item", f"accuracy+bleu:{ic_ref}:{ic_hyp}:{tmp_path}"])
    assert "FIGURE one of ['slurp_intent']" in capsys.readouterr().err


def test_wer_cli_keeps_sclite_files(tmp_path, capsys):
    find_sclite()
    ref = write(tmp_path / "ref", "u1 HELLO WORLD\n")
    hyp = write(tmp_path / "hyp", "u1 hello word\n")
    main(["--metric", "wer", "--ref", str(ref), "--hyp", str(hyp),
          "--out_dir", str(tmp_path / "o")])  # fmt: skip
    # WORLD -> WORD: 1 substitution of 2 words = 50 %
    assert capsys.readouterr().out.strip() == "wer: 50.00 (n=1)"
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["hyp.trn", "ref.trn", "result.json", "result.txt"]


@pytest.mark.parametrize(
    "metric, ref_text, hyp_text, message",
    [
        ("macro_f1", "u1 a\nu1 b\n", "u1 a\n", "ref:2: duplicate utterance id 'u1'"),
        ("macro_f1", "u1 a\n", "u1 a\n\n", "hyp:2: empty line"),
        ("macro_f1", "u1 a\n", "u1 a\nzz b\n", "hyp:2: 1 hypothesis utterance id"),
        # The bad references have hypotheses: a reference without one is skipped.
        ("macro_f1", "u1 a\nu2\n", "u1 a\nu2 b\n", "ref:2: reference of utterance 'u2'"),
        (
            "slu_f1",
            "u1 a\nu2 <entity:date> x <SEP> y\n",
            "u1 a\nu2 y\n",
            "ref:2: reference",
        ),
        ("wer", "u1 a\nu(2 b\n", "u1 a\nu(2 b\n", "ref:2: utterance id 'u(2' contains"),
        ("wer", "u1 .\n", "u1 a\n", "scoring "),
    ],
)
def test_cli_bad_input(tmp_path, capsys, metric, ref_text, hyp_text, message):
    """Every input error names the file, and the line where there is one."""
    ref = write(tmp_path / "ref", ref_text)
    hyp = write(tmp_path / "hyp", hyp_text)
    with pytest.raises(SystemExit) as e:
        main(["--metric", metric, "--ref", str(ref), "--hyp", str(hyp),
              "--out_dir", str(tmp_path / "o")])  # fmt: skip
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and message in err
    assert not (tmp_path / "o" / "result.json").exists()


def test_cli_subprocess_missing_file_no_traceback(tmp_path):
    proc = run_module(
        "espnet_pruning.bin.uslu_score",
        "--metric", "accuracy", "--ref", str(tmp_path / "missing"),
        "--hyp", str(tmp_path / "missing"), "--out_dir", str(tmp_path / "o"),
        check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "ERROR: cannot read" in proc.stderr and "missing" in proc.stderr


def test_several_items_in_one_process(tmp_path, capsys):
    ref = tmp_path / "ref"
    ref.write_text("u1 em:hap SEP a\nu2 em:sad SEP b\n")
    (tmp_path / "h1").write_text("u1 em:hap\nu2 em:hap\n")
    (tmp_path / "h2").write_text("u1 em:hap\nu2 em:sad\n")
    main(
        [
            "--item",
            f"accuracy:{ref}:{tmp_path / 'h1'}:{tmp_path / 's1'}",
            "--item",
            f"accuracy:{ref}:{tmp_path / 'h2'}:{tmp_path / 's2'}",
        ]
    )
    values = [
        json.loads((tmp_path / s / "result.json").read_text())["value"]
        for s in ("s1", "s2")
    ]
    assert values == [50.0, 100.0]
    assert f"{tmp_path / 's2'}: accuracy: 100.00 (n=2)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--item", f"bleu:{ref}:{ref}:{tmp_path}"])
    assert "ERROR: --item" in capsys.readouterr().err
