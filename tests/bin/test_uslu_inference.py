"""Decoding a data set after training, greedy and beam search, prompt tokens stripped."""

import pytest
from conftest import run_module


def decode(exp, data, out, task, *extra):
    return run_module(
        "espnet_pruning.bin.uslu_inference",
        "--task",
        task,
        "--train_config",
        str(exp / "config.yaml"),
        "--model_file",
        str(exp / "valid.loss.best.pth"),
        "--data_path_and_name_and_type",
        f"{data}/wav.scp,speech,sound",
        "--output_dir",
        str(out),
        *extra,
    )


def read(path):
    return dict(line.rstrip("\n").split(" ", 1) for line in open(path) if line.strip())


@pytest.mark.parametrize("beam", ["1", "3"])
def test_decodes_emotion_labels_after_training(tiny_trained, tiny_data, tmp_path, beam):
    out = tmp_path / "decode"
    decode(
        tiny_trained,
        tiny_data / "train",
        out,
        "er_iemocap",
        "--beam_size",
        beam,
        "--maxlenratio",
        "-8",
    )
    hyps = read(out / "1best_recog" / "text")
    refs = read(tiny_data / "train" / "text")
    assert set(hyps) == set(refs)  # every utterance decoded, ESPnet layout
    for name in ("token", "token_int", "score"):
        assert set(read(out / "1best_recog" / name)) == set(refs)
    er = [u for u in refs if "-er_iemocap-" in u]
    assert len(er) == 8
    # The tiny model memorised the two emotion tones: the label is right every time.
    assert [hyps[u].split()[0] for u in er] == [refs[u].split()[0] for u in er]
    assert not any("<|" in h for h in hyps.values())


def test_maxlen_limits_tokens(tiny_trained, tiny_data, tmp_path):
    out = tmp_path / "decode"
    decode(tiny_trained, tiny_data / "valid", out, "er_iemocap", "--maxlenratio", "-1")
    for ids in read(out / "1best_recog" / "token_int").values():
        assert len(ids.split()) <= 1


def test_unknown_task_is_a_clear_error(tiny_trained, tiny_data, tmp_path):
    proc = run_module(
        "espnet_pruning.bin.uslu_inference",
        "--task",
        "ic_atis",
        "--train_config",
        str(tiny_trained / "config.yaml"),
        "--model_file",
        str(tiny_trained / "valid.loss.best.pth"),
        "--data_path_and_name_and_type",
        f"{tiny_data / 'valid'}/wav.scp,speech,sound",
        "--output_dir",
        str(tmp_path / "d"),
        check=False,
    )
    assert proc.returncode == 1
    assert "ERROR: unknown task 'ic_atis'" in proc.stderr
