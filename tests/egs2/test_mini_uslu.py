"""The mini recipe end to end in a short configuration (CI), in a scratch copy."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from espnet_pruning.specifiers import TaskRegistry

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "mini_uslu" / "slu1"
TASKS = TaskRegistry.load().names
SHORT = [
    "--local_data_opts",
    "--n_train 4 --n_valid 2 --n_test 3 --n_cl 2",
    "--train_args",
    # Masked training in blocks of one batch, one round: 7 steps an epoch, not 56.
    "--max_epoch 2 --batch_size 8 --task_block_size 1 --task_rounds 1",
    "--prune_levels",
    "1 2",
]


def scratch_recipe(tmp: Path) -> Path:
    """A recipe dir whose data/dump/exp live in ``tmp``; code is linked, not copied."""
    (tmp / "egs2" / "mini_uslu").mkdir(parents=True)
    (tmp / "egs2" / "TEMPLATE").symlink_to(ROOT / "egs2" / "TEMPLATE")
    (tmp / "tools").symlink_to(ROOT / "tools")
    recipe = tmp / "egs2" / "mini_uslu" / "slu1"
    recipe.mkdir()
    for item in RECIPE.iterdir():
        if item.name not in (
            "data",
            "dump",
            "exp",
            "downloads",
            "figures",
            "RESULTS.md",
        ):
            (recipe / item.name).symlink_to(
                os.readlink(item) if item.is_symlink() else item
            )
    return recipe


def run_recipe(
    recipe: Path, *args: str, timeout: int = 3600
) -> subprocess.CompletedProcess:
    """``./run.sh args`` in its own process group: a time-out ends every job it started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    proc = subprocess.Popen(
        ["./run.sh", *args],
        cwd=recipe,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"./run.sh {' '.join(args)}: over {timeout} s\n{err[-4000:]}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.skipif(
    not (ROOT / "tools" / "espnet").is_dir(), reason="make -C tools first"
)
def test_mini_recipe_short_configuration(tmp_path):
    recipe = scratch_recipe(tmp_path)
    proc = run_recipe(recipe, *SHORT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(
        (recipe / "exp" / "uslu_train_uslu" / "results.json").read_text()
    )
    rows = {r["task"]: r for r in results["results"]}
    assert sorted(rows) == sorted(TASKS)
    assert all(r["n"] == 3 for r in rows.values())
    assert rows["asr_librispeech"]["metric"] == "wer"
    assert rows["ic_snips"]["metric"] == "macro_f1"
    assert rows["ner_slurp"]["metric"] == "slu_f1"
    md = (recipe / "exp" / "RESULTS.md").read_text()
    assert all(f"|{t}|test_{t}|" in md for t in TASKS)

    # Table 1 from masks and scores: Param% One equal for every pruned system at a
    # level, All = union (multi-task) <= sum (single-task), one mask (task-agnostic).
    table = json.loads((recipe / "exp" / "pruning_table.json").read_text())
    kinds = [(r["kind"], r["level"]) for r in table["rows"]]
    assert kinds == [("dense", 0)] + [
        (k, q) for q in (1, 2) for k in ("multi_task", "single_task", "task_agnostic")
    ]
    for row in table["rows"][1:]:
        assert sorted(row["scores"]) == sorted(TASKS)
        expected = {1: 80.0, 2: 64.0}[row["level"]]
        assert abs(row["sparsity"] - (100 - expected)) < 0.01
    by = {(r["kind"], r["level"]): r for r in table["rows"]}
    for q in (1, 2):
        mt, st, ta = (
            by[(k, q)] for k in ("multi_task", "single_task", "task_agnostic")
        )
        assert mt["param_one"] == st["param_one"] == ta["param_one"]
        assert ta["param_all"] == ta["param_one"] <= mt["param_all"] <= 100.0
        assert abs(st["param_all"] - 7 * st["param_one"]) < 1e-6
    # Continual learning: both runs, every system, a report with the verdicts.
    for run in ("asr", "ic"):
        report = json.loads(
            (recipe / "exp" / f"continual_{run}" / "report.json").read_text()
        )
        assert sorted(report["forgetting"]) == sorted(
            ["masked_q1", "masked_q2", "dense", "dense_enc_linear"]
        )
        assert len(report["verdicts"]) == 4
        assert (recipe / "exp" / "figures" / f"continual_{run}.png").stat().st_size > 0
    assert "](figures/continual_asr.png)" in md and "](figures/overlap_q2.png)" in md
    assert (
        "(Table 1)" in md and "(Table 2)" in md and "## Continual learning: asr" in md
    )
    assert (recipe / "exp" / "packed" / "uslu_multi_task_q2.zip").is_file()
    # The run writes only git-ignored dirs (the recipe's RESULTS.md, figures/ untouched).
    assert sorted(p.name for p in recipe.iterdir() if not p.is_symlink()) == [
        "data",
        "downloads",
        "dump",
        "exp",
    ]

    # A second run skips every stage's finished work.
    again = run_recipe(recipe, *SHORT)
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert "Stage 4: dump/token_list/tokens.txt exists, skipped" in out
    assert "exp/uslu_train_uslu done, skipped" in out
    assert "decode_test_er_iemocap done, skipped" in out
    assert "exp/find_masks/multi_task/round2 done, skipped" in out
    assert "exp/uslu_multi_task_q2 done, skipped" in out
    assert "exp/continual_ic/dense done, skipped" in out

    # A related method in short (docs/methods.md §6; the others have driver tests):
    # one run of changing masks at Q = 2 only, then stage 23's table beside Algorithm 1
    # (compared where both have the level).
    methods = ["dynamic_pathways"]
    for method in methods:
        proc = run_recipe(
            recipe,
            *SHORT,
            "--mask_method",
            method,
            "--stage",
            "10",
            "--stop_stage",
            "14",
            "--prune_levels",
            "2",
            "--prune_baselines",
            "",
        )
        assert proc.returncode == 0, method + proc.stderr[-3000:]
        assert (recipe / "exp" / method / "uslu_multi_task_q2" / ".done").is_file()
    proc = run_recipe(
        recipe,
        *SHORT,
        "--stage",
        "23",
        "--stop_stage",
        "23",
        "--compare_methods",
        " ".join(["imp_lth", *methods]),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((recipe / "exp" / "methods_table.json").read_text())
    rows = {(r["method"], r["level"]): r for r in table["rows"]}
    assert {"imp_lth", *methods} <= {m for m, _ in rows}
    for method in ("imp_lth", "dynamic_pathways"):
        assert abs(rows[(method, 2)]["sparsity"] - 36.0) < 0.05, method
        assert sorted(rows[(method, 2)]["scores"]) == sorted(TASKS)
    assert "|dynamic_pathways|2|" in (recipe / "exp" / "methods_table.md").read_text()
    significance = recipe / "exp" / "methods_significance_dynamic_pathways.md"
    assert "Q=2" in significance.read_text() and "Q=1" not in significance.read_text()


BASE = ROOT / "tools" / "downloads" / "whisper" / "base.pt"
#: The pretrained path in a few steps per stage (README: the full run's command and results).
SHORT_BASE = [
    "--pretrained",
    "base",
    "--local_data_opts",
    "--n_train 1 --n_valid 1 --n_test 1 --n_cl 1",
    "--train_args",
    "--max_epoch 1 --batch_size 7",
    "--prune_levels",
    "1",
    # Baselines and continual learning run the same code as the tiny model's test above.
    "--prune_baselines",
    "",
    "--cl_runs",
    "",
]


@pytest.mark.skipif(
    not ((ROOT / "tools" / "espnet").is_dir() and BASE.is_file()),
    reason="make -C tools whisper-base first",
)
def test_mini_recipe_pretrained_base_short(tmp_path):
    import torch

    recipe = scratch_recipe(tmp_path)
    proc = run_recipe(recipe, *SHORT_BASE, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    exp = recipe / "exp" / "pretrained_base"
    results = json.loads((exp / "uslu_train_uslu" / "results.json").read_text())
    assert sorted(r["task"] for r in results["results"]) == sorted(TASKS)
    page = (exp / "RESULTS.md").read_text()
    assert "Whisper base" in page and "Table 1" in page
    # Nothing outside exp/ but the shared corpus and dumps; no exp/RESULTS.md of the tiny run.
    assert sorted(p.name for p in recipe.iterdir() if not p.is_symlink()) == [
        "data",
        "downloads",
        "dump",
        "exp",
    ]
    assert not (recipe / "exp" / "RESULTS.md").exists()
    # Trained from OpenAI's weights: a few small steps away from them, not a random model.
    model = torch.load(
        exp / "uslu_train_uslu" / "valid.acc.best.pth", weights_only=True
    )
    start = torch.load(BASE, weights_only=True)["model_state_dict"]
    for ours, theirs in (
        ("encoder.encoders.conv1.weight", "encoder.conv1.weight"),
        ("decoder.decoders.blocks.5.mlp.2.weight", "decoder.blocks.5.mlp.2.weight"),
    ):
        diff = (model[ours] - start[theirs].float()).abs().max()
        assert 0 < diff < 0.02, (ours, diff)
    # Global pruning over encoder and decoder (the paper's), one level.
    table = json.loads((exp / "pruning_table.json").read_text())
    assert (
        "global_magnitude" in json.dumps(table)
        or (
            exp / "find_masks" / "multi_task" / "round1" / "masks" / "manifest.json"
        ).is_file()
    )
    assert (exp / "figures" / "overlap_q1.png").is_file()
