"""slu.sh without training: its help text, its gates, the assembly of RESULTS.md."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_mini_uslu import RECIPE, ROOT, scratch_recipe

SLU_SH = ROOT / "egs2" / "TEMPLATE" / "slu1" / "slu.sh"

pytestmark = pytest.mark.skipif(
    not (ROOT / "tools" / "espnet").is_dir(), reason="make -C tools first"
)


def options_block() -> dict:
    """``name -> comment`` of the variables between ``SECONDS=0`` and ``help_message=``."""
    text = SLU_SH.read_text(encoding="utf-8")
    block = text.split("\nSECONDS=0\n", 1)[1].split("\nhelp_message=", 1)[0]
    options = {}
    for line in block.splitlines():
        m = re.match(r"([a-z_][a-z0-9_]*)=", line)
        if m:
            options[m.group(1)] = line.partition(" #")[2].strip()
    return options


def slu_sh(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    return subprocess.run(
        ["./slu.sh", *args],
        cwd=recipe,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def help_entries(text: str) -> dict:
    """``--option -> its lines`` of the help text (an entry ends where the next begins)."""
    entries, current = {}, None
    for line in text.splitlines():
        m = re.match(r"\s+--([a-z_][a-z0-9_]*)\s+#", line)
        if m:
            current = entries.setdefault(m.group(1), [])
        elif not line.strip().startswith("#"):
            current = None
        if current is not None:
            current.append(line)
    return entries


def test_every_option_has_a_description_and_help_with_its_default():
    options = options_block()
    assert len(options) >= 45 and {"stage", "skip_pruning", "cl_runs"} <= set(options)
    assert [k for k, v in options.items() if not v] == []  # each one described
    proc = slu_sh(RECIPE, "--help")
    assert proc.returncode == 0, proc.stderr
    entries = help_entries(proc.stderr)
    assert sorted(entries) == sorted(options)  # every option, and nothing else
    assert [k for k, v in entries.items() if "default" not in " ".join(v)] == [
        "test_sets"  # required
    ]
    assert '--stop_stage             # Last stage to run (default="23").' in proc.stderr


def test_an_unknown_option_or_baseline_is_refused():
    proc = slu_sh(RECIPE, "--test_sets", "t", "--results_file", "RESULTS.md")
    assert proc.returncode != 0 and "invalid option --results_file" in proc.stderr
    proc = slu_sh(RECIPE, "--test_sets", "t", "--prune_baselines", "agnostic")
    assert proc.returncode == 2
    assert "ERROR: --prune_baselines: unknown baseline agnostic" in proc.stdout


SECTIONS = {
    "uslu_train_uslu/RESULTS.md": "# RESULTS: exp/uslu_train_uslu\n",
    "pruning_table.md": "## Table 1\n",
    "pruning_table2.md": "## Table 2\n",
    "significance.md": "## Matched-pairs test\n",
    "mask_figures.md": "![overlap](figures/overlap_q2.png)\n",
    "continual_asr/report.md": "## Continual learning: asr\n",
    "continual_ic/report.md": "## Continual learning: ic\n",
}
CL_RUNS = (
    "asr:asr_librispeech:train_cl_asr:valid_cl_asr ic:ic_slurp:train_cl_ic:valid_cl_ic"
)


def test_stage_21_assembles_the_sections_in_order(tmp_path):
    recipe = scratch_recipe(tmp_path)
    for name, text in SECTIONS.items():
        (recipe / "exp" / name).parent.mkdir(parents=True, exist_ok=True)
        (recipe / "exp" / name).write_text(text)
    args = ["--test_sets", "t", "--cl_runs", CL_RUNS, "--stage", "21", "--stop_stage"]
    proc = slu_sh(recipe, *args, "21")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (recipe / "exp" / "RESULTS.md").read_text()
    assert page == "\n".join(SECTIONS.values())
    # Without the task_agnostic baseline, no matched-pairs section; a missing one is left out.
    (recipe / "exp" / "continual_asr" / "report.md").unlink()
    proc = slu_sh(recipe, *args, "21", "--prune_baselines", "single_task")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = [v for k, v in SECTIONS.items() if k[:4] not in ("sign", "cont")]
    assert (recipe / "exp" / "RESULTS.md").read_text() == "\n".join(
        left + [SECTIONS["continual_ic/report.md"]]
    )
    # Nothing outside exp/ (the recipe's committed RESULTS.md stays as it is).
    assert sorted(p.name for p in recipe.iterdir() if not p.is_symlink()) == ["exp"]


def test_gates_skip_their_stages(tmp_path):
    recipe = scratch_recipe(tmp_path)
    # Without a dense model, stages 10, 17 and 22 would fail; skipped, they do nothing.
    proc = slu_sh(
        recipe,
        *("--test_sets", "t", "--cl_runs", CL_RUNS, "--stage", "10"),
        *("--skip_pruning", "true", "--skip_continual", "true"),
        *("--skip_packing", "true", "--skip_stages", "21"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Stage" not in proc.stdout and "Successfully finished" in proc.stdout
    assert not (recipe / "exp").exists()
    # Without --skip_pruning, stage 10 runs and fails: no θ0.
    proc = slu_sh(recipe, "--test_sets", "t", "--stage", "10", "--stop_stage", "10")
    assert proc.returncode == 1
    assert "exp/uslu_train_uslu/valid.acc.best.pth: θ0 not found" in proc.stdout
