"""Task masks inside ESPnet's Trainer: out-of-place masking per batch, frozen weights
bit-identical (also under 2-process DDP), checkpoints with ESPnet's keys.

Property numbers (P12) are those of docs/pruning_pitfalls.md §9.
"""

import pytest
import torch
import yaml
from conftest import run_module, run_torchrun
from tiny import train_args, write_train_config

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import prune_global_magnitude
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.tasks.uslu import USLUTask

TASKS = TaskRegistry.load().names


@pytest.fixture(scope="module")
def masks_of_tiny(tiny_trained, tmp_path_factory):
    """A mask set over the tiny model: ER keeps 64 %, ASR 36 % (different weights)."""
    model, _ = USLUTask.build_model_from_file(
        tiny_trained / "config.yaml", tiny_trained / "valid.loss.best.pth"
    )
    ms = MaskSet.from_model(model, PruningScope(), TASKS)
    params = dict(model.named_parameters())
    w = {n: params[n].detach() for n in ms.names}
    g = torch.Generator().manual_seed(0)
    noisy = {n: t + 0.05 * torch.randn(t.shape, generator=g) for n, t in w.items()}
    for task, weights, fraction in (
        ("er_iemocap", w, 0.36),
        ("asr_librispeech", noisy, 0.64),
    ):
        ms.set_mask(task, prune_global_magnitude(weights, ms.mask(task), fraction))
    out = tmp_path_factory.mktemp("masks") / "masks"
    save_masks(ms, out)
    return out


def masked_train_args(tiny_data, tiny_trained, masks, out, config):
    return [
        *train_args(tiny_data, out, config, tiny_data / "tokens.txt"),
        "--init_param",
        str(tiny_trained / "valid.loss.best.pth"),
        "--mask_dir",
        str(masks),
    ]


def assert_frozen_outside(before, after, mask, others_frozen):
    moved_inside = False
    for name, value in after.items():
        if name in mask:
            m = mask[name]
            assert torch.equal(value[~m], before[name][~m]), name
            moved_inside |= not torch.equal(value[m], before[name][m])
        elif others_frozen:
            assert torch.equal(value, before[name]), name
    assert moved_inside  # not vacuous


def test_continual_step_updates_only_the_task_mask(
    tiny_data, tiny_trained, masks_of_tiny, tmp_path
):
    config = write_train_config(
        tmp_path / "c.yaml",
        max_epoch=2,
        iterator_type="task",
        task_block_size=2,
        train_tasks=["er_iemocap"],
        optim="adamw",
        optim_conf=dict(lr=0.003, weight_decay=0.1),
        update_outside_mask="freeze",
        unmasked_update="freeze",
    )
    run_module(
        "espnet_pruning.bin.uslu_train",
        *masked_train_args(
            tiny_data, tiny_trained, masks_of_tiny, tmp_path / "exp", config
        ),
    )
    before = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    after = torch.load(tmp_path / "exp" / "2epoch.pth", weights_only=True)
    assert list(after) == list(before)  # ESPnet's keys, no mask entries
    mask = load_masks(masks_of_tiny).mask("er_iemocap")
    assert_frozen_outside(before, after, mask, others_frozen=True)
    conf = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert conf["mask_dir"] == str(masks_of_tiny)


def test_masked_multitask_training_ddp(
    tiny_data, tiny_trained, masks_of_tiny, tmp_path
):
    """2 gloo processes, task blocks, masks chosen per batch: every rank on one task."""
    config = write_train_config(
        tmp_path / "c.yaml",
        max_epoch=1,
        iterator_type="task",
        task_block_size=1,
        task_rounds=2,
        train_tasks=["er_iemocap", "asr_librispeech"],
        optim="adamw",
        optim_conf=dict(lr=0.003, weight_decay=0.1),
        update_outside_mask="freeze",
        unmasked_update="freeze",
    )
    proc = run_torchrun(
        "espnet_pruning.bin.uslu_train",
        *masked_train_args(
            tiny_data, tiny_trained, masks_of_tiny, tmp_path / "exp", config
        ),
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    before = torch.load(tiny_trained / "valid.loss.best.pth", weights_only=True)
    after = torch.load(tmp_path / "exp" / "1epoch.pth", weights_only=True)
    ms = load_masks(masks_of_tiny)
    union = {
        n: ms.mask("er_iemocap")[n] | ms.mask("asr_librispeech")[n] for n in ms.names
    }
    assert_frozen_outside(before, after, union, others_frozen=True)


def test_mixed_task_batch_is_rejected(tiny_data, tiny_trained, masks_of_tiny, tmp_path):
    config = write_train_config(tmp_path / "c.yaml", max_epoch=1, batch_type="unsorted")
    proc = run_module(
        "espnet_pruning.bin.uslu_train",
        *masked_train_args(
            tiny_data, tiny_trained, masks_of_tiny, tmp_path / "exp", config
        ),
        check=False,
    )
    assert proc.returncode == 1
    assert "batch mixes tasks" in proc.stderr


def test_decoding_a_task_subnetwork(tiny_data, tiny_trained, masks_of_tiny, tmp_path):
    from espnet_pruning.inference.speech2text import Speech2Text

    dense = Speech2Text(
        tiny_trained / "config.yaml",
        tiny_trained / "valid.loss.best.pth",
        "er_iemocap",
        maxlenratio=-3.0,
    )
    sub = Speech2Text(
        tiny_trained / "config.yaml",
        tiny_trained / "valid.loss.best.pth",
        "er_iemocap",
        maxlenratio=-3.0,
        mask_dir=masks_of_tiny,
    )
    mask = load_masks(masks_of_tiny).mask("er_iemocap")
    params = dict(sub.model.named_parameters())
    dense_params = dict(dense.model.named_parameters())
    for name, m in mask.items():  # baked once: W ⊙ m
        assert torch.equal(params[name], dense_params[name] * m)
    # The baked subnetwork computes what the masked model computes (E4).
    from espnet_pruning.pruning.apply import call_with_masks

    speech, lengths = torch.randn(1, 8000), torch.tensor([8000])
    with torch.no_grad():
        enc_sub = sub.model.encode(speech, lengths)[0]
        enc_masked = call_with_masks(
            dense.model.encoder,
            {
                n[len("encoder.") :]: m
                for n, m in mask.items()
                if n.startswith("encoder.")
            },
            speech,
            lengths,
        )[0]
    assert torch.allclose(enc_sub, enc_masked, atol=1e-6)
    assert not torch.allclose(enc_sub, dense.model.encode(speech, lengths)[0])
    assert len(sub(speech[0])) == 1


def test_resume_equals_uninterrupted_run(
    tiny_data, tiny_trained, masks_of_tiny, tmp_path
):
    """P12: 1 epoch, stop, --resume to 2 epochs == 2 epochs straight (bitwise, CPU)."""

    def config(max_epoch):
        return write_train_config(
            tmp_path / f"c{max_epoch}.yaml",
            max_epoch=max_epoch,
            iterator_type="task",
            task_block_size=1,
            task_rounds=2,
            train_tasks=["er_iemocap", "ic_fsc"],
            optim="adamw",
            optim_conf=dict(lr=0.003, weight_decay=0.1),
            update_outside_mask="freeze",
            keep_nbest_models=2,
        )

    straight = tmp_path / "straight"
    run_module(
        "espnet_pruning.bin.uslu_train",
        *masked_train_args(tiny_data, tiny_trained, masks_of_tiny, straight, config(2)),
    )
    resumed = tmp_path / "resumed"
    run_module(
        "espnet_pruning.bin.uslu_train",
        *masked_train_args(tiny_data, tiny_trained, masks_of_tiny, resumed, config(1)),
    )
    proc = run_module(
        "espnet_pruning.bin.uslu_train",
        *masked_train_args(tiny_data, tiny_trained, masks_of_tiny, resumed, config(2)),
        "--resume",
        "true",
    )
    assert "2/2epoch started" in proc.stderr and "1/2epoch started" not in proc.stderr
    a = torch.load(straight / "2epoch.pth", weights_only=True)
    b = torch.load(resumed / "2epoch.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
