"""Figure data from hand-made masks and series (exact numbers) and the PNGs."""

import matplotlib.image
import pytest
import torch

from espnet_pruning.errors import DataError
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.scoring.plots import (
    curves_data,
    layer_sparsity_data,
    overlap_data,
    plot_forgetting_curves,
    plot_layer_sparsity,
    plot_overlap_heatmap,
    read_series,
    write_series,
)


def bits(*values):
    return torch.tensor(values, dtype=torch.bool)


@pytest.fixture
def masks():
    shapes = {
        "decoder.decoders.blocks.0.attn.query.weight": (4,),
        "encoder.encoders.blocks.10.mlp.0.weight": (2,),
        "encoder.encoders.blocks.2.mlp.0.weight": (2,),
    }
    a = {
        "decoder.decoders.blocks.0.attn.query.weight": bits(1, 1, 0, 0),
        "encoder.encoders.blocks.10.mlp.0.weight": bits(1, 1),
        "encoder.encoders.blocks.2.mlp.0.weight": bits(1, 0),
    }
    b = {
        "decoder.decoders.blocks.0.attn.query.weight": bits(0, 1, 1, 0),
        "encoder.encoders.blocks.10.mlp.0.weight": bits(1, 0),
        "encoder.encoders.blocks.2.mlp.0.weight": bits(0, 0),
    }
    return MaskSet(shapes, {"er": a, "asr": b})


def test_overlap_and_layer_sparsity_values(masks, tmp_path):
    # er keeps 5 of 8, asr 3; both keep 2 (decoder 1, encoder block 10 one): 2 / 6.
    data = overlap_data(masks)
    assert data["tasks"] == ["er", "asr"]
    flat = [v for row in data["percent"] for v in row]
    assert flat == pytest.approx([100.0, 100 * 2 / 6, 100 * 2 / 6, 100.0])
    layers = layer_sparsity_data(masks)
    assert layers["layers"] == [
        "encoder.encoders.blocks.2",
        "encoder.encoders.blocks.10",
        "decoder.decoders.blocks.0",
    ]
    assert layers["sparsity"] == {"er": [50.0, 0.0, 50.0], "asr": [100.0, 50.0, 50.0]}
    for fn, name in ((plot_overlap_heatmap, "o.png"), (plot_layer_sparsity, "l.png")):
        image = matplotlib.image.imread(fn(masks, tmp_path / name))
        assert image.shape[0] > 100 and image.shape[1] > 100
    assert not list(tmp_path.glob(".*"))  # no temporary file left


ROWS = [
    dict(system="dense", step=10, task="er", metric="accuracy", value=60.0),
    dict(system="dense", step=0, task="er", metric="accuracy", value=70.0),
    dict(system="masked", step=0, task="er", metric="accuracy", value=71.0),
    dict(system="masked", step=10, task="asr", metric="wer", value=12.5),
]


def test_series_round_trip_and_curves(tmp_path):
    path = write_series(ROWS, tmp_path / "s.csv")
    assert path.read_text().splitlines()[0] == "system,step,task,metric,value"
    assert read_series(path) == ROWS
    assert curves_data(ROWS) == {
        "er": {"dense": [(0, 70.0), (10, 60.0)], "masked": [(0, 71.0)]},
        "asr": {"masked": [(10, 12.5)]},
    }
    png = plot_forgetting_curves(ROWS, tmp_path / "f.png", title="asr")
    assert matplotlib.image.imread(png).shape[2] in (3, 4)


def test_bad_series_names_file_and_line(tmp_path):
    bad = tmp_path / "s.csv"
    bad.write_text(
        "system,step,task,metric,value\ndense,0,er,accuracy,70\ndense,x,er,a,1\n"
    )
    with pytest.raises(DataError, match=r"s.csv:3: "):
        read_series(bad)
    bad.write_text("system,step\n")
    with pytest.raises(DataError, match=r"s.csv:1: header"):
        read_series(bad)


def test_cli_writes_figures_and_names_bad_input(masks, tmp_path):
    from conftest import run_module

    from espnet_pruning.pruning.storage import save_masks

    save_masks(masks, tmp_path / "m")
    for fig in ("overlap", "layers"):
        out = tmp_path / f"{fig}.png"
        run_module(
            "espnet_pruning.bin.uslu_plots",
            fig,
            "--mask_dir",
            str(tmp_path / "m"),
            "--output",
            str(out),
        )
        assert out.stat().st_size > 1000
    write_series(ROWS, tmp_path / "s.csv")
    run_module(
        "espnet_pruning.bin.uslu_plots",
        "forgetting",
        "--series",
        str(tmp_path / "s.csv"),
        "--output",
        str(tmp_path / "f.png"),
    )
    proc = run_module(
        "espnet_pruning.bin.uslu_plots",
        "forgetting",
        "--series",
        str(tmp_path / "none.csv"),
        "--output",
        str(tmp_path / "g.png"),
        check=False,
    )
    assert (
        proc.returncode == 1 and "ERROR: " in proc.stderr and "none.csv" in proc.stderr
    )
    assert not (tmp_path / "g.png").exists()
