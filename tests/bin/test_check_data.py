"""check_data: a data directory whose prompts and utt2category disagree is one error."""

import pytest
from tiny import make_data_dir

from espnet_pruning.bin.check_data import main


def test_a_consistent_directory_passes_and_counts_tasks(tmp_path, capsys):
    data = make_data_dir(tmp_path, "train", n_per_class=1)
    main(["--data_dir", str(data)])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("OK (asr_librispeech 2, er_iemocap 2, ic_fsc 2)")
    )


def test_utt2category_disagreeing_with_the_prompt_is_one_error_line(tmp_path, capsys):
    data = make_data_dir(tmp_path, "train", n_per_class=1)
    lines = (data / "utt2category").read_text().splitlines()
    uid = lines[0].split()[0]
    lines[0] = f"{uid} ic_slurp"
    (data / "utt2category").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["--data_dir", str(data), "--no_audio"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1
    assert err[0].startswith(f"ERROR: {data / 'utt2category'}: utterance {uid} is ")
