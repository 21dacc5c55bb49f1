import json

import torch
from conftest import run_module

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.storage import save_masks


def _saved(tmp_path):
    shapes = {"encoder.blocks.0.w": (2, 3), "decoder.token_embedding.weight": (4, 2)}
    g = torch.Generator().manual_seed(0)
    masks = {
        t: {n: torch.rand(s, generator=g) > 0.4 for n, s in shapes.items()}
        for t in ("asr", "ic")
    }
    return save_masks(MaskSet(shapes, masks, n_model_params=30), tmp_path / "masks")


def test_prints_tables_and_writes_json(tmp_path):
    d = _saved(tmp_path)
    proc = run_module(
        "espnet_pruning.bin.mask_info", str(d), "--json", str(tmp_path / "r.json")
    )
    assert "Param% One" in proc.stdout and "overlap" in proc.stdout
    assert "encoder.blocks.0" in proc.stdout and "asr" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["tasks"]) == {"asr", "ic"}
    proc = run_module("espnet_pruning.bin.mask_info", str(d), "--task", "ic")
    assert "decoder.token_embedding.weight" in proc.stdout  # per-tensor table


def test_corrupt_set_exits_1_naming_the_file(tmp_path):
    d = _saved(tmp_path)
    data = bytearray((d / "ic.mask").read_bytes())
    data[0] ^= 1
    (d / "ic.mask").write_bytes(bytes(data))
    proc = run_module("espnet_pruning.bin.mask_info", str(d), check=False)
    assert proc.returncode == 1
    assert "ic.mask" in proc.stderr and "checksum" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_module(
        "espnet_pruning.bin.mask_info", str(tmp_path / "nothing"), check=False
    )
    assert proc.returncode == 1 and "does not exist" in proc.stderr
    good = _saved(tmp_path / "good")
    proc = run_module(
        "espnet_pruning.bin.mask_info", str(good), "--task", "zz", check=False
    )
    assert proc.returncode == 1 and "zz" in proc.stderr


def test_help():
    proc = run_module("espnet_pruning.bin.mask_info", "--help")
    assert "--json" in proc.stdout and "mask_dir" in proc.stdout
