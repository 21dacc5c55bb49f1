"""uslu_masks: init, one pruning round per task, merge, task-agnostic, skip when done."""

import torch
from conftest import run_module

from espnet_pruning.pruning.storage import load_masks


def test_init_prune_merge(tiny_trained, tmp_path):
    r0 = tmp_path / "round0"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "init",
        "--train_config",
        str(tiny_trained / "config.yaml"),
        "--tasks",
        "er_iemocap",
        "ic_fsc",
        "--output",
        str(r0),
    )
    base = load_masks(r0)
    assert base.tasks == ("er_iemocap", "ic_fsc") or list(base.tasks) == [
        "er_iemocap",
        "ic_fsc",
    ]
    n = base.numel()
    assert base.kept("er_iemocap") == n

    model = str(tiny_trained / "valid.loss.best.pth")
    er = tmp_path / "er"
    proc = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "er_iemocap",
        "--model_file",
        model,
        "--fraction",
        "0.2",
        "--output",
        str(er),
    )
    pruned = load_masks(er)
    assert pruned.kept("er_iemocap") == n - round(0.2 * n)
    assert pruned.kept("ic_fsc") == n  # other tasks untouched
    assert "keeps" in proc.stderr

    # The magnitude order of the checkpoint's weights decides.
    state = torch.load(model, weights_only=True)
    m = pruned.mask("er_iemocap")
    kept = torch.cat([state[k].abs()[m[k]] for k in pruned.names])
    gone = torch.cat([state[k].abs()[~m[k]] for k in pruned.names])
    assert kept.min() >= gone.max()

    merged = tmp_path / "round1"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "merge",
        "--base",
        str(r0),
        "--take",
        f"er_iemocap={er}",
        "--output",
        str(merged),
    )
    assert load_masks(merged) == pruned

    agnostic = tmp_path / "agnostic"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "ic_fsc",
        "--model_file",
        model,
        "--task_agnostic",
        "--output",
        str(agnostic),
    )
    ag = load_masks(agnostic)
    assert all(
        torch.equal(ag.mask("er_iemocap")[k], ag.mask("ic_fsc")[k]) for k in ag.names
    )

    again = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "er_iemocap",
        "--model_file",
        model,
        "--output",
        str(er),
    )
    assert "exists, skipped" in again.stderr


def test_bad_inputs(tiny_trained, tmp_path):
    proc = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(tmp_path / "none"),
        "--task",
        "x",
        "--model_file",
        "m.pth",
        "--output",
        str(tmp_path / "o"),
        check=False,
    )
    assert proc.returncode == 1 and "none does not exist" in proc.stderr
    r0 = tmp_path / "r0"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "init",
        "--train_config",
        str(tiny_trained / "config.yaml"),
        "--tasks",
        "ic_fsc",
        "--output",
        str(r0),
    )
    proc = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "er_iemocap",
        "--model_file",
        "m.pth",
        "--output",
        str(tmp_path / "o"),
        check=False,
    )
    assert proc.returncode == 1 and "has no mask for task 'er_iemocap'" in proc.stderr


def _fail(main, args, capsys):
    """Run a CLI ``main`` in-process; it must exit 1 with one ERROR line."""
    import pytest

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_masks_of_another_model_are_refused_naming_the_folder(
    tiny_trained, tiny_data, tmp_path, capsys
):
    """Masks made for a model with fewer layers: prune and training refuse them,
    naming the mask folder and the first tensors without a mask."""
    import yaml
    from tiny import train_args, write_train_config

    from espnet_pruning.bin import mask_info, uslu_masks, uslu_train

    conf = yaml.safe_load((tiny_trained / "config.yaml").read_text())
    conf["encoder_conf"]["whisper_dims"]["n_audio_layer"] = 1
    (tmp_path / "fewer.yaml").write_text(yaml.safe_dump(conf))
    fewer = tmp_path / "fewer"
    uslu_masks.main(
        ["init", "--train_config", str(tmp_path / "fewer.yaml"), "--tasks", "ic_fsc"]
        + ["--output", str(fewer)]
    )
    expected = (
        f"ERROR: mask set {fewer}: masks do not cover exactly the model's prunable "
        "tensors: no mask for ['encoder.encoders.blocks.1."
    )
    error = _fail(
        uslu_masks.main,
        ["prune", "--mask_dir", fewer, "--task", "ic_fsc", "--model_file"]
        + [tiny_trained / "valid.loss.best.pth", "--output", tmp_path / "o"],
        capsys,
    )
    assert error.startswith(expected) and not (tmp_path / "o").exists()
    config = write_train_config(tmp_path / "train.yaml", max_epoch=1)
    args = train_args(tiny_data, tmp_path / "exp", config, tiny_data / "tokens.txt")
    error = _fail(uslu_train.main, [*args, "--mask_dir", fewer], capsys)
    assert error.startswith(expected)

    error = _fail(
        uslu_masks.main,
        ["init", "--train_config", tiny_trained / "config.yaml", "--tasks"]
        + ["ic_fsc", "no_such_task", "--output", tmp_path / "bad"],
        capsys,
    )
    assert "unknown task(s) ['no_such_task']" in error
    assert not (tmp_path / "bad").exists()
    error = _fail(mask_info.main, [tiny_trained / "config.yaml"], capsys)
    assert error == f"ERROR: {tiny_trained / 'config.yaml'}: not a mask directory " + (
        "(a file; expected a directory with manifest.json)"
    )


def test_upgrade_of_a_version1_set(tiny_trained, tmp_path, capsys):
    import json

    from espnet_pruning.bin import mask_info, uslu_masks

    r0 = tmp_path / "r0"
    config = tiny_trained / "config.yaml"
    uslu_masks.main(["init", "--train_config", str(config), "--output", str(r0)])
    current = load_masks(r0)
    manifest = json.loads((r0 / "manifest.json").read_text())
    del manifest["checksum"], manifest["scope"]
    manifest["version"] = 1
    (r0 / "manifest.json").write_text(json.dumps(manifest, indent=1))
    error = _fail(mask_info.main, [r0], capsys)
    assert f"uslu_masks upgrade --mask_dir {r0} --train_config" in error
    uslu_masks.main(["upgrade", "--mask_dir", str(r0), "--train_config", str(config)])
    assert load_masks(r0) == current
