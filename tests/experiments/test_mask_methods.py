"""The mask-method registry and ``uslu_find_masks --mask_method`` on a tiny model."""

import json
import math
from pathlib import Path

import pytest
import torch
from tiny import driver_train_args, task_run_config

from espnet_pruning.bin.uslu_find_masks import main
from espnet_pruning.errors import InputError
from espnet_pruning.experiments.mask_methods import (
    MASK_METHODS,
    level_sparsity,
    parp_hparams,
)
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.pathways import mask_to_blocks
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import num_to_prune
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.pruning.structured import kept_units_of_mask
from espnet_pruning.tasks.uslu import USLUTask

TASKS = ["asr_librispeech", "er_iemocap"]


def test_levels_are_the_sparsities_of_algorithm_1():
    assert [level_sparsity(0.2, q) for q in (1, 2, 3, 5)] == [0.2, 0.36, 0.488, 0.67232]
    with pytest.raises(ValueError, match="level"):
        level_sparsity(0.2, 0)


def test_parp_options_come_from_the_level_and_the_method_config():
    hp = parp_hparams("parp", 0.2, 2, "round", {"reprune_interval": 3})
    assert (hp.target_sparsity, hp.schedule, hp.reprune_interval) == (0.36, "", 3)
    hp = parp_hparams("parp_p", 0.2, 2, "ceil", {})
    assert (hp.target_sparsity, hp.schedule, hp.rounding) == (0.36, "0.2,0.36", "ceil")
    with pytest.raises(InputError, match=r"key\(s\) \['target_sparsity'\] not allowed"):
        parp_hparams("parp", 0.2, 2, "round", {"target_sparsity": 0.5})
    with pytest.raises(InputError, match="parp config: reprune_interval"):
        parp_hparams("parp", 0.2, 2, "round", {"reprune_interval": 0})


def test_every_registered_method_cites_its_spec():
    root = Path(__file__).resolve().parents[2]
    assert sorted(MASK_METHODS) == [
        "dynamic_pathways",
        "hard_concrete",
        "imp",
        "imp_lth",
        "omp",
        "parp",
        "parp_p",
        "random",
        "s3_router",
        "s3_router_p",
    ]
    for method in MASK_METHODS.values():
        page, section = method.spec.split(" §")
        text = (root / page).read_text(encoding="utf-8")
        assert f"\n## {section.split('.')[0]}. " in text or f"### {section} " in text


@pytest.fixture(scope="module")
def setup(tiny_data, tiny_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    config = task_run_config(root / "find.yaml", 2)
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    scope = PruningScope(include_token_embedding=False)
    save_masks(MaskSet.from_model(model, scope, TASKS), root / "round0")
    return dict(
        root=root,
        args=driver_train_args(tiny_data, config),
        theta0=tiny_trained / "valid.loss.best.pth",
    )


def _find(setup, out, *options):
    main(
        [
            "--init_param",
            str(setup["theta0"]),
            "--mask_dir",
            str(setup["root"] / "round0"),
            "--output_dir",
            str(out),
            *options,
            "--",
            *setup["args"],
        ]
    )


def test_parp_p_at_level_2_rises_to_36_percent(setup, tmp_path):
    conf = tmp_path / "parp_p.yaml"
    conf.write_text("reprune_interval: 1\nscope: global\n")
    out = tmp_path / "round2"
    _find(
        setup,
        out,
        "--round",
        "2",
        "--mask_method",
        "parp_p",
        "--method_config",
        str(conf),
    )
    masks = load_masks(out / "masks")
    n = masks.numel()
    for task in TASKS:
        assert masks.kept(task) == n - num_to_prune(n, 0.36)
    log = json.loads((out / "parp.json").read_text())
    assert (log["schedule"], log["target_sparsity"]) == ("0.2,0.36", 0.36)


def test_s3_router_p_at_level_2_keeps_64_percent_of_ffn_and_attention(setup, tmp_path):
    """The recipe's method config (WMI, FFN and attention): every routed tensor keeps
    round(0.64 n) weights, every other tensor (the token embedding is not in this mask
    set; the audio convolutions are) keeps all."""
    root = Path(__file__).resolve().parents[2]
    conf = root / "egs2/uslu7/slu1/conf/mask_methods/s3_router_p.yaml"
    out = tmp_path / "round2"
    _find(
        setup,
        out,
        "--round",
        "2",
        "--mask_method",
        "s3_router_p",
        "--method_config",
        str(conf),
    )
    masks = load_masks(out / "masks")
    for task in TASKS:
        kept = masks.kept_per_tensor(task)
        linear = [n for n in masks.names if ".conv" not in n]
        assert linear and all(".mlp." in n or "attn." in n for n in linear)
        for name in masks.names:
            numel = math.prod(masks.shapes[name])
            expected = numel if ".conv" in name else round(0.64 * numel)
            assert kept[name] == expected, name
    log = json.loads((out / "s3_router.json").read_text())
    assert (log["keep_ratio"], log["modules"], log["init"]) == (0.64, "both", "wmi")


def test_dynamic_pathways_with_the_paper_settings_ends_at_the_target_in_blocks(
    setup, tmp_path, caplog
):
    """The recipe's method config (8×1 blocks, n = 100, T = 730): the tiny run is far
    shorter than T, so the driver takes the prune steps on the run's final weights,
    says so, and every tensor ends at the level's sparsity in blocks."""
    caplog.set_level("WARNING")
    root = Path(__file__).resolve().parents[2]
    conf = root / "egs2/uslu7/slu1/conf/mask_methods/dynamic_pathways.yaml"
    out = tmp_path / "round2"
    _find(
        setup,
        out,
        "--round",
        "2",
        "--mask_method",
        "dynamic_pathways",
        "--method_config",
        str(conf),
    )
    masks = load_masks(out / "masks")
    for task in TASKS:
        for name, m in masks.mask(task).items():
            units = mask_to_blocks(m, (8, 1))  # raises on a mixed block
            n = units.numel()
            assert int(units.sum()) == n - num_to_prune(n, 0.36), name
    log = json.loads((out / "pathways.json").read_text())
    assert (log["target_sparsity"], log["granularity"], log["init_sparsity"]) == (
        0.36,
        "block",
        0.2,
    )
    assert log["run"]["prune_steps"] == 0 and log["prune_steps_after_run"] == 1
    assert "1 prune step(s) taken on its final weights" in caplog.text


@pytest.mark.parametrize("mode", ["single_task", "multi_task"])
def test_hard_concrete_masks_remove_whole_heads_and_units(setup, tmp_path, mode):
    """The recipe's method config: every task's mask is structured (whole heads and
    FFN units), the kept units are those of the run's evaluation gates, and the
    compiled task model has exactly the mask's parameters fewer (with the dropped
    rows' biases)."""
    root = Path(__file__).resolve().parents[2]
    conf = tmp_path / "hc.yaml"
    base = (
        root / "egs2/mini_uslu/slu1/conf/mask_methods/hard_concrete.yaml"
    ).read_text()
    conf.write_text(base.replace("mode: single_task", f"mode: {mode}"))
    out = tmp_path / "round2"
    _find(
        setup,
        out,
        "--round",
        "2",
        "--mask_method",
        "hard_concrete",
        "--method_config",
        str(conf),
    )
    masks = load_masks(out / "masks")
    log = json.loads((out / "hard_concrete.json").read_text())
    assert (log["mode"], log["target_sparsity"], log["reg_lr"]) == (mode, 0.36, 0.5)
    run = out / ("run" if mode == "multi_task" else TASKS[0])
    model, _ = USLUTask.build_model_from_file(None, run / "2epoch.pth")
    for task in TASKS:
        kept = kept_units_of_mask(model, masks.mask(task))  # raises unless structured
        assert {n: int(k.sum()) for n, k in kept.items()} == log["kept_units"][task]
        if mode == "multi_task":
            gates = model.task_gates.eval_gates(task)
            assert all(torch.equal(kept[n], gates[n] > 0) for n in kept)
    assert any(masks.kept(t) < masks.numel() for t in TASKS)  # something was dropped


def test_imp_continues_from_the_previous_round_and_omp_prunes_in_one_round(
    setup, tmp_path
):
    """IMP (rewind none): round 2's run of a task starts from its run of round 1, not
    θ0. OMP: one round from the all-ones masks to the level's sparsity."""
    _find(setup, tmp_path / "round1", "--round", "1", "--mask_method", "imp")
    masks1 = tmp_path / "round1" / "masks"
    main(
        [
            "--init_param",
            str(setup["theta0"]),
            "--mask_dir",
            str(masks1),
            "--output_dir",
            str(tmp_path / "round2"),
            "--round",
            "2",
            "--mask_method",
            "imp",
            "--",
            *setup["args"],
        ]
    )
    for task in TASKS:
        config = (tmp_path / "round2" / task / "config.yaml").read_text()
        assert f"init_param:\n- {tmp_path / 'round1' / task / '2epoch.pth'}" in config
    masks = load_masks(tmp_path / "round2" / "masks")
    n = masks.numel()
    after_1 = n - num_to_prune(n, 0.2)
    assert all(masks.kept(t) == after_1 - num_to_prune(after_1, 0.2) for t in TASKS)
    _find(setup, tmp_path / "omp2", "--round", "2", "--mask_method", "omp")
    omp = load_masks(tmp_path / "omp2" / "masks")
    config = (tmp_path / "omp2" / TASKS[0] / "config.yaml").read_text()
    assert f"init_param:\n- {setup['theta0']}" in config
    for task in TASKS:
        assert omp.kept(task) == n - num_to_prune(n, 0.36)
    log = json.loads((tmp_path / "omp2" / "find_masks.json").read_text())
    assert log["hparams"]["fraction"] == 0.36 and log["round"] == 2


def test_random_is_algorithm_1_with_random_masks(setup, tmp_path):
    out = tmp_path / "round1"
    _find(
        setup, out, "--round", "1", "--mask_method", "random", "--tasks", "er_iemocap"
    )
    masks = load_masks(out / "er_iemocap" / "masks")
    # Random masks keep layer-wise counts (global magnitude would not).
    for name, kept in masks.kept_per_tensor("er_iemocap").items():
        size = masks.shapes[name]
        numel = math.prod(size)
        assert kept == numel - num_to_prune(numel, 0.2)
    assert not (out / "masks").exists()  # one task's job: the merge comes later


def test_a_bad_method_config_is_one_error_line(setup, tmp_path, capsys):
    conf = tmp_path / "bad.yaml"
    conf.write_text("sparsity: 0.5\n")
    with pytest.raises(SystemExit) as e:
        _find(
            setup,
            tmp_path / "x",
            "--round",
            "1",
            "--mask_method",
            "parp",
            "--method_config",
            str(conf),
        )
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERROR: parp config: key(s) ['sparsity'] not allowed")
    assert "Traceback" not in "\n".join(err)
