import subprocess
import sys

from corpora_testlib import ESPNET_UTILS, expect_error, run_cli, table
from test_fsc_prep import make_fsc
from test_iemocap_prep import make_iemocap

from espnet_pruning.corpora import combine, fsc, iemocap
from espnet_pruning.corpora.kaldi import validate_data_dir


def test_upsampled_combination(tmp_path, capsys):
    data = tmp_path / "data"
    common = ["--out_dir", str(data), "--no_progress"]
    root = make_iemocap(tmp_path / "IEMOCAP_full_release")
    assert run_cli(iemocap.main, "--root", str(root), *common) == 0
    assert run_cli(fsc.main, "--root", str(make_fsc(tmp_path / "fsc")), *common) == 0
    out = data / "train"
    args = [
        "--out_dir",
        str(out),
        f"{data}/train_er_iemocap:3",
        str(data / "train_ic_fsc"),
    ]
    assert run_cli(combine.main, *args) == 0
    text = table(out, "text")
    assert len(text) == 4 * 3 + 2
    utt = "iemocap_Ses01F-er_iemocap-Ses01F_impro01_F000"
    assert [text[utt + s] for s in ("", "-rep2", "-rep3")] == [
        "em:neu SEP excuse me"
    ] * 3
    assert table(out, "utt2category")[utt + "-rep3"] == "er_iemocap"
    assert (
        table(out, "utt2category")[
            "fsc_2BqVo8kVB2Skwgyb-ic_fsc-0a3b5aa0-45f3-11e9-8ec0-7bf21d1cfe30"
        ]
        == "ic_fsc"
    )
    assert table(out, "wav.scp")[utt + "-rep2"] == table(out, "wav.scp")[utt]
    assert table(out, "utt2num_samples")[utt + "-rep2"] == "800"
    assert table(out, "spk2utt")["iemocap_Ses01F"].split() == [
        utt,
        utt + "-rep2",
        utt + "-rep3",
        "iemocap_Ses01F-er_iemocap-Ses01F_impro01_F001",
        "iemocap_Ses01F-er_iemocap-Ses01F_impro01_F001-rep2",
        "iemocap_Ses01F-er_iemocap-Ses01F_impro01_F001-rep3",
    ]
    assert validate_data_dir(out) == 14
    if (ESPNET_UTILS / "validate_data_dir.sh").is_file():
        proc = subprocess.run(
            ["utils/validate_data_dir.sh", "--no-feats", str(out)],
            cwd=ESPNET_UTILS.parent,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # The same set twice, and a missing set: one error line, nothing written.
    bad = tmp_path / "bad"
    fsc_set = str(data / "train_ic_fsc")
    twice = ["--out_dir", str(bad / "train"), fsc_set, fsc_set]
    expect_error(capsys, combine.main, twice, bad, "is in both")
    expect_error(
        capsys,
        combine.main,
        ["--out_dir", str(bad / "t"), str(data / "nope")],
        bad,
        "nope",
    )
    expect_error(
        capsys,
        combine.main,
        ["--out_dir", str(bad / "t"), f"{data / 'train_ic_fsc'}:0"],
        bad,
        "at least 1",
    )


def test_module_exit_status(tmp_path):
    """The real entry point: status 1, one ERROR line, no traceback."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_pruning.corpora.fsc",
            "--root",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"ERROR: {tmp_path / 'x'}: fsc corpus root not found"
