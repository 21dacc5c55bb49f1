"""UniverSLU through ESPnet's Trainer: training, config portability, bad input."""

import pytest
import torch
import yaml
from conftest import run_module
from tiny import epoch_losses, train_args, write_train_config

from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.train.s3_router_training import S3RouterConfError


def copy_train_set(tiny_data, tmp_path):
    """A writable copy of the tiny train set (valid linked) under ``tmp_path``."""
    bad = tmp_path / "train"
    bad.mkdir()
    for f in (tiny_data / "train").iterdir():
        (bad / f.name).write_text(f.read_text())
    (tmp_path / "valid").symlink_to(tiny_data / "valid")
    return bad


def train(data_root, tmp_path, config, token_list, check=False):
    """``uslu_train`` on ``data_root`` into ``tmp_path/exp``."""
    return run_module(
        "espnet_pruning.bin.uslu_train",
        *train_args(data_root, tmp_path / "exp", config, token_list),
        check=check,
    )


def test_loss_falls(tiny_trained):
    losses = epoch_losses((tiny_trained / "train.log").read_text())
    assert len(losses) == 12
    assert losses[-1] < 0.25 * losses[0], losses
    valid = epoch_losses((tiny_trained / "train.log").read_text(), "valid")
    assert valid[-1] < 0.5 * valid[0], valid


def test_checkpoint_keys_are_espnet_whisper_names(tiny_trained):
    state = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    assert "encoder.encoders.blocks.0.attn.query.weight" in state
    assert "decoder.decoders.token_embedding.weight" in state
    assert "decoder.decoders.positional_embedding" in state
    assert all(k.startswith(("encoder.encoders.", "decoder.decoders.")) for k in state)


def test_config_is_portable(tiny_trained):
    conf = yaml.safe_load((tiny_trained / "config.yaml").read_text())
    assert len(conf["token_list"]) == 51865
    assert "er_iemocap" in conf["task_specifiers"]["tasks"]
    model, args = USLUTask.build_model_from_file(
        tiny_trained / "config.yaml", tiny_trained / "valid.loss.best.pth"
    )
    assert model.task_names[:3] == ["er_iemocap", "ic_slurp", "asr_librispeech"]
    state = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_missing_a_weight_is_refused(tiny_trained, tmp_path):
    """Strict, unlike ESPnet's loader: a missing key would keep a random weight."""
    state = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    del state["decoder.decoders.ln.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="decoder.decoders.ln.weight"):
        USLUTask.build_model_from_file(
            tiny_trained / "config.yaml", tmp_path / "partial.pth"
        )


def test_unknown_task_in_data(tiny_data, tmp_path):
    bad = copy_train_set(tiny_data, tmp_path)
    lines = (bad / "prompt").read_text().splitlines()
    lines[0] = lines[0].split()[0] + " <|en|> <|ic|> <|atis|>"
    (bad / "prompt").write_text("\n".join(lines) + "\n")
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1)
    proc = train(tmp_path, tmp_path, config, tiny_data / "tokens.txt")
    assert proc.returncode == 1
    assert "prompt:1: utterance" in proc.stderr and "<|atis|>" in proc.stderr
    assert "epoch started" not in proc.stderr  # rejected before training


def test_unknown_task_in_config(tiny_data, tmp_path):
    spec = tmp_path / "tasks.yaml"
    spec.write_text(
        "tasks:\n  x:\n    prompt: '<|en|>'\n    target: nope\n    metric: wer\n"
    )
    config = write_train_config(
        tmp_path / "c.yaml", max_epoch=1, task_specifiers=str(spec)
    )
    proc = train(tiny_data, tmp_path, config, tiny_data / "tokens.txt")
    assert proc.returncode == 1
    assert f"ERROR: {spec}: tasks.x.target" in proc.stderr


def test_checkpoint_missing_and_dims_mismatch(tiny_data, tmp_path):
    missing = tmp_path / "medium.pt"
    config = write_train_config(
        tmp_path / "c.yaml",
        max_epoch=1,
        encoder_conf=dict(whisper_checkpoint=str(missing)),
        decoder_conf=dict(whisper_checkpoint=str(missing)),
    )
    proc = train(tiny_data, tmp_path, config, tiny_data / "tokens.txt")
    assert proc.returncode == 1
    assert f"ERROR: {missing}: Whisper checkpoint file not found" in proc.stderr


def test_token_list_not_matching(tiny_data, tmp_path):
    tokens = (tiny_data / "tokens.txt").read_text().splitlines()
    (tmp_path / "tokens.txt").write_text("\n".join(tokens[:-5]) + "\n")
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1)
    proc = train(tiny_data, tmp_path, config, tmp_path / "tokens.txt")
    assert proc.returncode == 1
    assert "tokens.txt: has 51860 tokens" in proc.stderr


def test_label_outside_token_list_is_rejected_before_training(tiny_data, tmp_path):
    bad = copy_train_set(tiny_data, tmp_path)
    lines = (bad / "text").read_text().splitlines()
    n = next(i for i, l in enumerate(lines) if "-er_iemocap-" in l)
    lines[n] = lines[n].split()[0] + " em:bored SEP hello"
    (bad / "text").write_text("\n".join(lines) + "\n")
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1)
    proc = train(tmp_path, tmp_path, config, tiny_data / "tokens.txt")
    assert proc.returncode == 1
    assert f"{bad / 'text'}:{n + 1}: utterance" in proc.stderr
    assert "'em:bored' is not in the token list" in proc.stderr
    assert "epoch started" not in proc.stderr


def test_task_iterator_trains_blocks_of_selected_tasks(tiny_data, tmp_path):
    config = write_train_config(
        tmp_path / "c.yaml",
        max_epoch=1,
        iterator_type="task",
        task_block_size=2,
        task_rounds=2,
        train_tasks=["er_iemocap", "ic_fsc"],
    )
    proc = run_module(
        "espnet_pruning.bin.uslu_train",
        *train_args(tiny_data, tmp_path / "exp", config, tiny_data / "tokens.txt"),
    )
    # 2 rounds x 2 tasks x 2 batches; validation sees the two tasks only.
    assert (
        "[train] task schedule: er_iemocap 2 batches, ic_fsc 2 batches; blocks of 2"
        in proc.stderr
    )
    assert (
        "[valid] task schedule: er_iemocap 1 batches, ic_fsc 1 batches" in proc.stderr
    )
    assert "total_count=8" in proc.stderr


@pytest.mark.parametrize(
    "option",
    [["--update_only", "encoder.*"], ["--parp_conf", '{"reprune_interval": 1}']],
)
def test_s3_router_conf_excludes_other_training_restrictions(
    tiny_data, tmp_path, option
):
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1)
    args = train_args(tiny_data, tmp_path / "exp", config, tiny_data / "tokens.txt")
    conf = '{"keep_ratio": 0.5, "modules": "both"}'
    with pytest.raises(S3RouterConfError, match=f"and {option[0]} exclude each other"):
        USLUTask.main(cmd=[*args, "--s3_router_conf", conf, *option])
    assert not (tmp_path / "exp" / "checkpoint.pth").exists()
