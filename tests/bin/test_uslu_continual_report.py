"""The continual-learning report command: its outputs and the figure's link."""

import json

import yaml

from espnet_pruning.bin.uslu_continual_report import main

SETS = ["test_er:er_iemocap", "test_asr:asr_librispeech"]
# system -> (start, epoch 1): (ER accuracy, ASR WER); new data: ASR
VALUES = {
    "masked_q2": [(70.0, 20.0), (69.0, 12.0)],
    "dense": [(72.0, 18.0), (50.0, 10.0)],
}


def write_score(d, name, value, higher):
    (d / "score").mkdir(parents=True)
    (d / "score" / "result.json").write_text(
        json.dumps(dict(name=name, value=value, n=3, higher_is_better=higher))
    )


def systems(root):
    """``--system`` options of two systems with scores at their start and epoch 1."""
    opts = []
    for name, (start, ep1) in VALUES.items():
        start_exp, exp = root / f"start_{name}", root / name
        exp.mkdir(parents=True)
        (exp / "config.yaml").write_text(yaml.safe_dump({"num_iters_per_epoch": 5}))
        for base, (er, asr) in ((start_exp, start), (exp / "curve" / "ep1", ep1)):
            write_score(base / "decode_test_er", "accuracy", er, True)
            write_score(base / "decode_test_asr", "wer", asr, False)
        opts += ["--system", f"{name}:{start_exp}:{exp}"]
    return opts


def test_report_links_the_figure_from_where_it_is_included(tmp_path, capsys):
    common = ["--name", "asr", "--task", "asr_librispeech", "--new_data", "train_cl"]
    common += [x for s in SETS for x in ("--test_set", s)] + systems(tmp_path)
    out = tmp_path / "continual_asr"
    figure = tmp_path / "figures" / "continual_asr.png"
    main(common + ["--out_dir", str(out), "--figure", str(figure)])
    assert f"![forgetting curves of asr]({figure})" in (out / "report.md").read_text()
    main(
        common
        + ["--out_dir", str(out), "--figure", str(figure)]
        + ["--figure_link", "figures/continual_asr.png"]
    )
    report = (out / "report.md").read_text()
    assert report.rstrip().endswith(
        "![forgetting curves of asr](figures/continual_asr.png)"
    )
    assert figure.stat().st_size > 0 and not (out / "curves.png").exists()
    assert json.loads((out / "report.json").read_text())["forgetting"] == {
        "masked_q2": 1.0,
        "dense": 22.0,
    }
    assert "|dense|72.0 → 50.0|18.0 → 10.0|+8.0|+22.0|" in report
