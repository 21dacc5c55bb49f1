"""Decoding a data set after training, greedy and beam search, prompt tokens stripped."""

import pytest
from conftest import run_module
from tiny import masked_model_args


def decode(exp, data, out, task, *extra, check=True):
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
        check=check,
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


def test_several_sets_in_one_process_match_separate_runs(
    tiny_trained, tiny_data, tmp_path
):
    """--decode_set items (own task, keys and beam config each) = one run per set, with
    the model built once; a set whose key file is empty (a job's share of a set smaller than the number of
    jobs) decodes nothing and is not an error."""
    keys, empty = tmp_path / "keys.scp", tmp_path / "empty.scp"
    empty.write_text("")
    lines = open(tiny_data / "valid" / "wav.scp").read().splitlines()
    keys.write_text("\n".join(lines[:3]) + "\n")
    conf = tmp_path / "beam.yaml"
    conf.write_text("beam_size: 2\nmaxlenratio: -2\n")
    exp = tiny_trained
    item = (
        f"train_config={exp}/config.yaml,model_file={exp}/valid.loss.best.pth,"
        f"data={tiny_data}/valid/wav.scp"
    )
    proc = run_module(
        "espnet_pruning.bin.uslu_inference",
        "--decode_set",
        f"task=er_iemocap,{item},output_dir={tmp_path}/a,key_file={keys}",
        "--decode_set",
        f"task=asr_librispeech,{item},output_dir={tmp_path}/b,config={conf}",
        "--decode_set",
        f"task=ic_slurp,{item},output_dir={tmp_path}/c,key_file={empty}",
    )
    decode(
        exp, tiny_data / "valid", tmp_path / "a1", "er_iemocap", "--key_file", str(keys)
    )
    decode(
        exp,
        tiny_data / "valid",
        tmp_path / "b1",
        "asr_librispeech",
        "--beam_size",
        "2",
        "--maxlenratio",
        "-2",
    )
    for x in ("a", "b"):
        for name in ("text", "token_int", "score"):
            got = read(tmp_path / x / "1best_recog" / name)
            assert got == read(tmp_path / f"{x}1" / "1best_recog" / name)
    assert len(read(tmp_path / "a" / "1best_recog" / "text")) == 3
    assert not (tmp_path / "c" / "1best_recog").exists()
    # One model for the sets of one model (each set had its own search settings).
    assert proc.stderr.count(f"config file: {exp}/config.yaml") == 1, proc.stderr


@pytest.mark.parametrize(
    "item, message",
    [
        ("task=er_iemocap,data", "expected KEY=VALUE"),
        ("task=er_iemocap,colour=red", "expected KEY=VALUE"),
        ("task=er_iemocap,output_dir=x", "missing"),
    ],
)
def test_malformed_decode_set_is_a_clear_error(tmp_path, item, message):
    proc = run_module(
        "espnet_pruning.bin.uslu_inference", "--decode_set", item, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("ERROR: ")
    assert message in proc.stderr


def test_bad_utterances_are_reported_and_the_others_decoded(
    tiny_trained, tiny_data, tmp_path
):
    """An empty and a missing recording: one ERROR line each, the rest decoded in
    batches of 4 exactly as one by one, failed_keys written, exit status 1."""
    import numpy as np
    import soundfile as sf

    from espnet_pruning.bin import uslu_inference

    data = tmp_path / "data"
    data.mkdir()
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    lines = open(tiny_data / "valid" / "wav.scp").read().splitlines()
    lines += [f"zz-empty {tmp_path / 'empty.wav'}", f"zz-gone {tmp_path / 'gone.wav'}"]
    lines.insert(2, f"a-empty {tmp_path / 'empty.wav'}")
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    out = tmp_path / "decode"
    proc = decode(
        tiny_trained,
        data,
        out,
        "er_iemocap",
        "--batch_size",
        "4",
        "--maxlenratio",
        "-4",
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 4 and "Traceback" not in proc.stderr
    assert errors[0].startswith("ERROR: a-empty: audio of 0 samples")
    assert errors[1].startswith("ERROR: zz-empty: audio of 0 samples")
    assert errors[2].startswith("ERROR: zz-gone: ") and "gone.wav" in errors[2]
    assert errors[3].startswith("ERROR: 3 utterance(s) failed")
    assert (out / "failed_keys").read_text().split() == [
        "a-empty",
        "zz-empty",
        "zz-gone",
    ]
    one_by_one = tmp_path / "one"
    uslu_inference.main(  # in process: the reference needs no second interpreter
        [
            "--task",
            "er_iemocap",
            "--train_config",
            str(tiny_trained / "config.yaml"),
            "--model_file",
            str(tiny_trained / "valid.loss.best.pth"),
            "--data_path_and_name_and_type",
            f"{tiny_data / 'valid'}/wav.scp,speech,sound",
            "--output_dir",
            str(one_by_one),
            "--maxlenratio",
            "-4",
        ]
    )
    for name in ("text", "token_int"):
        assert read(out / "1best_recog" / name) == read(
            one_by_one / "1best_recog" / name
        )


def test_a_set_mixing_tasks_decodes_each_with_its_own_prompt_and_mask(
    tiny_trained, tiny_data, tiny_er_masks, tmp_path
):
    """--utt2task: one process, one model, every utterance with its task's subnetwork."""
    import soundfile as sf

    from espnet_pruning.bin import uslu_inference
    from espnet_pruning.inference.speech2text import Speech2Text

    valid = tiny_data / "valid"
    out = tmp_path / "mixed"
    uslu_inference.main(
        [
            "--utt2task",
            str(valid / "utt2category"),
            *masked_model_args(tiny_trained, tiny_er_masks),
            "--data_path_and_name_and_type",
            f"{valid}/wav.scp,speech,sound",
            "--output_dir",
            str(out),
            "--batch_size",
            "2",
            "--maxlenratio",
            "-5",
        ]
    )
    hyps = read(out / "1best_recog" / "token_int")
    utt2task = read(valid / "utt2category")
    wavs = read(valid / "wav.scp")
    assert set(hyps) == set(utt2task) and len(set(utt2task.values())) == 3
    for task in set(utt2task.values()):
        alone = Speech2Text(
            tiny_trained / "config.yaml",
            tiny_trained / "valid.loss.best.pth",
            task,
            maxlenratio=-5,
            mask_dir=tiny_er_masks,
        )
        for key in [k for k, t in utt2task.items() if t == task]:
            ids = alone(sf.read(wavs[key], dtype="float32")[0])[0][2]
            assert hyps[key] == " ".join(map(str, ids)), key
