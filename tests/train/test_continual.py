"""Continual learning on one task's subnetwork through ESPnet's Trainer: every weight
outside the task's mask stays bit-identical (also in the n-best averaged model), a task
with a disjoint mask decodes exactly as before, one with an overlapping mask does not;
the encoder-linear-only baseline touches only those weights."""

import re

import pytest
import torch
from conftest import run_module
from tiny import train_args, write_train_config

from espnet_pruning.fileio import read_kaldi_map
from espnet_pruning.inference.speech2text import Speech2Text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import save_masks
from espnet_pruning.tasks.uslu import USLUTask

NEW = "er_iemocap"  # t_c, the task with new data
DISJOINT = "ic_fsc"  # mask disjoint from t_c's
OVERLAP = "asr_librispeech"  # mask overlapping t_c's
ENC_LINEAR = r"encoder\.encoders\.blocks\.\d+\.(attn\.(query|key|value|out)|mlp\.[02])\.(weight|bias)"


@pytest.fixture(scope="module")
def masks(tiny_trained, tmp_path_factory):
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    ms = MaskSet.from_model(model, PruningScope(), [NEW, DISJOINT, OVERLAP])
    g = torch.Generator().manual_seed(0)
    half = {n: torch.rand(s, generator=g) < 0.5 for n, s in ms.shapes.items()}
    more = {n: torch.rand(s, generator=g) < 0.3 for n, s in ms.shapes.items()}
    ms.set_mask(NEW, half)
    ms.set_mask(DISJOINT, {n: ~m for n, m in half.items()})
    ms.set_mask(OVERLAP, {n: m | more[n] for n, m in half.items()})
    out = tmp_path_factory.mktemp("cl_masks") / "masks"
    save_masks(ms, out)
    return out, ms


def run_continual(tiny_data, tiny_trained, out, config, *extra):
    run_module(
        "espnet_pruning.bin.uslu_train",
        *train_args(tiny_data, out, config, tiny_data / "tokens.txt"),
        "--init_param",
        str(tiny_trained / "valid.loss.best.pth"),
        *extra,
    )


@pytest.fixture(scope="module")
def continual(tiny_data, tiny_trained, masks, tmp_path_factory):
    root = tmp_path_factory.mktemp("continual")
    config = write_train_config(
        root / "c.yaml",
        max_epoch=3,
        iterator_type="task",
        task_block_size=2,
        train_tasks=[NEW],
        optim="adamw",
        optim_conf=dict(lr=0.003, weight_decay=0.1),
        update_outside_mask="freeze",
        unmasked_update="freeze",
        keep_nbest_models=3,
    )
    run_continual(
        tiny_data, tiny_trained, root / "exp", config, "--mask_dir", str(masks[0])
    )
    return root / "exp"


def test_weights_outside_the_mask_stay_exact_also_after_averaging(
    continual, tiny_trained, masks
):  # P13a, P19
    before = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    mask = masks[1].mask(NEW)
    averaged = continual / "valid.loss.ave_3best.pth"
    for path in (continual / "3epoch.pth", averaged):
        after = torch.load(path, weights_only=True)
        moved = False
        for name, value in after.items():
            if name in mask:
                assert torch.equal(value[~mask[name]], before[name][~mask[name]]), name
                moved |= not torch.equal(value[mask[name]], before[name][mask[name]])
            else:  # biases, LayerNorm, positional embedding: frozen by default
                assert torch.equal(value, before[name]), name
        assert moved, path  # the task's subnetwork did train
    # Not vacuous: ESPnet's plain average (sum / 3 in fp32) moves frozen entries.
    states = [
        torch.load(continual / f"{e}epoch.pth", weights_only=True) for e in (1, 2, 3)
    ]
    plain = {k: (states[0][k] + states[1][k] + states[2][k]) / 3 for k in before}
    assert any(not torch.equal(plain[n][~m], before[n][~m]) for n, m in mask.items())


def decode_all(exp, model_file, mask_dir, task, wavs):
    import soundfile as sf

    s2t = Speech2Text(
        exp / "config.yaml", model_file, task, mask_dir=mask_dir, maxlenratio=-4
    )
    return [s2t(sf.read(w)[0])[0] for w in wavs]


def test_disjoint_task_decodes_identically_overlapping_does_not(
    continual, tiny_trained, tiny_data, masks
):  # P13 b, c
    wavs = list(read_kaldi_map(tiny_data / "valid" / "wav.scp").values())[:4]
    for task, same in ((DISJOINT, True), (OVERLAP, False)):
        got = [
            decode_all(tiny_trained, model, masks[0], task, wavs)
            for model in (
                tiny_trained / "valid.loss.best.pth",
                continual / "valid.loss.ave_3best.pth",
            )
        ]
        assert (got[0] == got[1]) is same, task  # text, tokens, ids and scores


def test_encoder_linear_only_baseline(tiny_data, tiny_trained, tmp_path):
    config = write_train_config(
        tmp_path / "c.yaml",
        max_epoch=1,
        iterator_type="task",
        task_block_size=2,
        train_tasks=[NEW],
        optim="adamw",
        optim_conf=dict(lr=0.003, weight_decay=0.1),
    )
    run_continual(
        tiny_data, tiny_trained, tmp_path / "exp", config, "--update_only", ENC_LINEAR
    )
    before = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    after = torch.load(tmp_path / "exp" / "1epoch.pth", weights_only=True)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    matching = {k for k in before if re.fullmatch(ENC_LINEAR, k)}
    assert changed and changed <= matching
    assert len(changed) > len(matching) / 2


def test_update_only_matching_nothing_is_a_clear_error(
    tiny_data, tiny_trained, tmp_path
):
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1)
    proc = run_module(
        "espnet_pruning.bin.uslu_train",
        *train_args(tiny_data, tmp_path / "exp", config, tiny_data / "tokens.txt"),
        "--update_only",
        r"encoder\.nothing",
        check=False,
    )
    assert proc.returncode == 1
    assert (
        "ERROR: --update_only 'encoder\\\\.nothing' matches no parameter" in proc.stderr
    )


def test_bad_masks_fail_before_training(tiny_data, tiny_trained, masks, tmp_path):
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1)
    shapes = {"encoder.encoders.conv1.weight": (3, 3)}
    other = MaskSet.ones([NEW], shapes, scope=PruningScope())
    save_masks(other, tmp_path / "other")
    for mask_dir, extra, message in (
        (tmp_path / "other", [], "encoder.encoders.conv1.weight"),
        (masks[0], ["--train_tasks", "ner_slurp"], "no mask for train task"),
    ):
        out = tmp_path / f"exp_{len(extra)}"
        proc = run_module(
            "espnet_pruning.bin.uslu_train",
            *train_args(tiny_data, out, config, tiny_data / "tokens.txt"),
            "--mask_dir",
            str(mask_dir),
            *extra,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        error = proc.stderr.strip().splitlines()[-1]
        assert error.startswith("ERROR: ") and message in error, error
        assert not (out / "1epoch.pth").exists()
