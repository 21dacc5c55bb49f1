"""Two CPU processes with torchrun and gloo train exactly like one process."""

import torch
from conftest import run_module, run_torchrun
from tiny import epoch_losses, train_args, write_train_config


def test_two_process_ddp_matches_single_process(tiny_data, tmp_path):
    config = write_train_config(tmp_path / "c.yaml", max_epoch=2)
    tokens = tiny_data / "tokens.txt"
    single = run_module(
        "espnet_pruning.bin.uslu_train",
        *train_args(tiny_data, tmp_path / "single", config, tokens),
    )
    ddp = run_torchrun(
        "espnet_pruning.bin.uslu_train",
        *train_args(tiny_data, tmp_path / "ddp", config, tokens),
    )
    assert ddp.returncode == 0, ddp.stderr[-5000:]
    assert "[vm:0/2]" in ddp.stderr or ":0/2]" in ddp.stderr  # rank 0 of world size 2

    # Every batch of 4 is split 2 + 2 over the ranks and gradients are averaged,
    # so both runs see the same gradients up to float rounding.
    l1, l2 = epoch_losses(single.stderr), epoch_losses(ddp.stderr)
    assert len(l1) == len(l2) == 2
    assert all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(l1, l2)), (l1, l2)
    s1 = torch.load(tmp_path / "single" / "2epoch.pth", weights_only=True)
    s2 = torch.load(tmp_path / "ddp" / "2epoch.pth", weights_only=True)
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.allclose(s1[k], s2[k], atol=1e-5), k
