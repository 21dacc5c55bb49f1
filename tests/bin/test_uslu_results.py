"""RESULTS.md and results.json of an experiment, with SLURP's official figures."""

import json

from espnet_pruning.bin.uslu_results import main
from espnet_pruning.bin.uslu_score import score_files


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_slurp_rows_carry_the_official_figures(tmp_path, capsys):
    exp = tmp_path / "exp" / "uslu_train"
    ic_ref = write(
        tmp_path / "ic_ref",
        "u1 alarm_set SEP a\nu2 iot_hue_lightup SEP b\nu3 qa_factoid SEP c\n",
    )
    ic_hyp = write(tmp_path / "ic_hyp", "u1 alarm_query\nu2 iot_hue_lightup\n")
    score_files(
        "accuracy",
        ic_ref,
        ic_hyp,
        exp / "decode_test_ic_slurp" / "score",
        figures=("slurp_intent",),
    )
    ner_ref = write(
        tmp_path / "ner_ref",
        "u1 <entity:date> <FILL> tomorrow <SEP> a\n"
        "u2 <entity:time> <FILL> five am <SEP> b\n",
    )
    ner_hyp = write(
        tmp_path / "ner_hyp",
        "u1 <entity:date> <FILL> tomorrow <SEP> a\nu2 <entity:time> <FILL> six am <SEP> b\n",
    )
    score_files("slu_f1", ner_ref, ner_hyp, exp / "decode_test_ner_slurp" / "score")
    er_ref = write(tmp_path / "er_ref", "u1 em:hap\nu2 em:sad\n")
    score_files("accuracy", er_ref, er_ref, exp / "decode_test_er" / "score")
    md, js = tmp_path / "RESULTS.md", tmp_path / "results.json"
    main(["--exp", str(exp), "--json", str(js), "--markdown", str(md),
          "--test_set", "test_ic_slurp:ic_slurp", "--test_set", "test_ner_slurp:ner_slurp",
          "--test_set", "test_er:er_iemocap"])  # fmt: skip
    rows = {r["task"]: r for r in json.loads(js.read_text())["results"]}
    # IC: u3 skipped; scenario 2/2, action 1/2, intent 1/2
    ic = rows["ic_slurp"]
    assert (ic["value"], ic["n"], ic["n_missing"], ic["missing"]) == (
        50.0,
        2,
        1,
        "skip",
    )
    assert ic["figures"] == {"scenario accuracy": 100.0, "action accuracy": 50.0}
    # NER: u1 exact; u2 six am vs five am: word d = 1/2, char d = lev 3 / 7.
    # word TP 2, FP = FN = 1/2; char TP 2, FP = FN = 3/7; each P = R = F1 = TP/(TP+d).
    ner = rows["ner_slurp"]["figures"]
    word, char = 100 * 2 / 2.5, 100 * 2 / (2 + 3 / 7)
    slu = 100 * 4 / (4 + 0.5 + 3 / 7)
    assert abs(ner["word-F1"] - word) < 1e-9 and abs(ner["char-F1"] - char) < 1e-9
    assert (
        abs(ner["SLU precision"] - slu) < 1e-9 and abs(ner["SLU recall"] - slu) < 1e-9
    )
    assert ner["span-F1"] == 50.0
    assert rows["er_iemocap"]["figures"] == {} and rows["er_iemocap"]["n_missing"] == 0
    text = md.read_text()
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[:2] == ["|task|test set|metric|value|#utt|", "|---|---|---|---|---|"]
    assert table[2:] == [
        "|ic_slurp|test_ic_slurp|accuracy ↑|50.0|2|",
        "|ic_slurp|test_ic_slurp|scenario accuracy ↑|100.0|2|",
        "|ic_slurp|test_ic_slurp|action accuracy ↑|50.0|2|",
        f"|ner_slurp|test_ner_slurp|slu_f1 ↑|{slu:.1f}|2|",
        f"|ner_slurp|test_ner_slurp|SLU precision ↑|{slu:.1f}|2|",
        f"|ner_slurp|test_ner_slurp|SLU recall ↑|{slu:.1f}|2|",
        f"|ner_slurp|test_ner_slurp|word-F1 ↑|{word:.1f}|2|",
        f"|ner_slurp|test_ner_slurp|char-F1 ↑|{char:.1f}|2|",
        "|ner_slurp|test_ner_slurp|span-F1 ↑|50.0|2|",
        "|er_iemocap|test_er|accuracy ↑|100.0|2|",
    ]
    assert "- test_ic_slurp: 1 utterance(s) without a hypothesis (skipped)" in text
