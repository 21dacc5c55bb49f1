"""uslu_structure_speed: kept shares exact, speed-ups measured, bad masks one error."""

import json

import pytest
import torch

from espnet_pruning.bin.uslu_structure_speed import main
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import save_masks
from espnet_pruning.pruning.structured import structured_mask, structures
from espnet_pruning.tasks.uslu import USLUTask


def test_every_task_measured_and_a_mask_that_is_not_structured_refused(
    tiny_trained, tmp_path, capsys
):
    config = tiny_trained / "config.yaml"
    model, _ = USLUTask.build_unmasked_model(config)
    masks = MaskSet.from_model(model, PruningScope(), ["er_iemocap", "ic_fsc"])
    found = structures(model)
    # ER keeps every other FFN unit and all heads; IC keeps everything.
    kept = {
        s.name: (
            torch.arange(s.count) % 2 == 0
            if s.kind == "ffn"
            else torch.ones(s.count, dtype=torch.bool)
        )
        for s in found
    }
    masks.set_mask("er_iemocap", structured_mask(model, kept, masks.shapes))
    save_masks(masks, tmp_path / "m")
    out = tmp_path / "speed.json"
    args = ["--train_config", str(config), "--output", str(out)]
    main([*args, "--mask_dir", str(tmp_path / "m"), "--seconds", "1", "--repeats", "2"])
    got = json.loads(out.read_text())
    assert sorted(got["tasks"]) == ["er_iemocap", "ic_fsc"]
    total = sum(s.count * s.params_per_unit for s in found)
    ffn = sum(s.count * s.params_per_unit for s in found if s.kind == "ffn")
    er = got["tasks"]["er_iemocap"]
    assert er["kept_params"] == pytest.approx((total - ffn / 2) / total, abs=1e-12)
    assert got["tasks"]["ic_fsc"]["kept_params"] == 1.0
    assert got["tasks"]["ic_fsc"]["kept_macs"] == 1.0 and er["kept_macs"] < 1.0
    assert all(r["encoder_speedup"] > 0 for r in got["tasks"].values())
    assert got["mean"]["kept_params"] == pytest.approx((er["kept_params"] + 1) / 2)
    assert (got["seconds"], got["tokens"], got["repeats"]) == (1.0, 32, 2)

    bad = masks.mask("er_iemocap")
    name = next(n for n in bad if n.endswith("mlp.2.weight"))
    bad[name][0, 0] = not bool(bad[name][0, 0])
    masks.set_mask("ic_fsc", bad)
    save_masks(masks, tmp_path / "bad")
    with pytest.raises(SystemExit) as e:
        main(
            [
                *args,
                "--mask_dir",
                str(tmp_path / "bad"),
                "--output",
                str(tmp_path / "x.json"),
            ]
        )
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERROR: ") and "task ic_fsc" in err[-1]
    assert not (tmp_path / "x.json").exists()
