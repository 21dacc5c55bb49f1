"""Figure data from hand-made masks and series (exact numbers), the PNGs, the CLI."""

import json

import matplotlib.image
import numpy as np
import pytest
import torch

from espnet_pruning.bin.uslu_plots import main
from espnet_pruning.errors import DataError
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.report import overlap_matrix
from espnet_pruning.pruning.storage import save_masks
from espnet_pruning.reports.plots import (
    curves_data,
    layer_order_key,
    layer_sparsity_data,
    overlap_data,
    plot_forgetting_curves,
    plot_layer_sparsity,
    plot_overlap_heatmap,
    read_series,
    validate_series,
    write_series,
)

DEC = "decoder.decoders.blocks.0.attn.query.weight"
ENC10 = "encoder.encoders.blocks.10.mlp.0.weight"
ENC2 = "encoder.encoders.blocks.2.mlp.0.weight"
CONV = "encoder.encoders.conv1.weight"


def bits(*values):
    return torch.tensor(values, dtype=torch.bool)


@pytest.fixture
def masks():
    shapes = {DEC: (4,), ENC10: (2,), ENC2: (2,), CONV: (2,)}
    er = {DEC: bits(1, 1, 0, 0), ENC10: bits(1, 1), ENC2: bits(1, 0), CONV: bits(1, 1)}
    asr = {DEC: bits(0, 1, 1, 0), ENC10: bits(1, 0), ENC2: bits(0, 0), CONV: bits(1, 0)}
    ic = {DEC: bits(0, 0, 0, 0), ENC10: bits(0, 0), ENC2: bits(0, 0), CONV: bits(0, 0)}
    return MaskSet(shapes, {"er": er, "asr": asr, "ic": ic})


def is_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return True


def test_overlap_values(masks):
    # er keeps 7 of 10, asr 4; both keep 3 (decoder 1, block 10 one, conv 1):
    # IoU 3 / (7 + 4 - 3) = 37.5 %. ic keeps nothing: IoU with er / asr is 0 / 7, 0 / 4,
    # and with itself 100 (two empty masks count as identical).
    data = overlap_data(masks)
    assert data == {
        "tasks": ["er", "asr", "ic"],
        "percent": [[100.0, 37.5, 0.0], [37.5, 100.0, 0.0], [0.0, 0.0, 100.0]],
    }
    labels = {"er": "ER", "ic": "IC-SLURP"}
    assert overlap_data(masks, labels)["tasks"] == ["ER", "asr", "IC-SLURP"]
    # The same numbers from the report dict, a bare ratio matrix, a percent dict.
    report = overlap_matrix(masks)
    assert overlap_data(report) == data
    bare = overlap_data(np.array(report["overall"]), ["a", "b", "c"])
    assert bare == {"tasks": ["a", "b", "c"], "percent": data["percent"]}
    assert overlap_data([[1.0, 0.5], [0.5, 1.0]])["tasks"] == ["task 1", "task 2"]
    assert overlap_data({"percent": [[100, 20], [20, 100]]})["percent"][0][1] == 20.0
    for bad, match in (
        ([[1.0, 0.5]], "square"),
        ([[1.0, 0.5], [0.5]], "not a matrix"),
        ([[1.0, 1.5], [1.5, 1.0]], r"\[0, 1\]"),
        ({"tasks": ["x"]}, "percent"),
    ):
        with pytest.raises(DataError, match=match):
            overlap_data(bad)
    with pytest.raises(DataError, match="2 task labels for 3 tasks"):
        overlap_data(masks, ["a", "b"])


def test_layer_sparsity_values(masks):
    data = layer_sparsity_data(masks)
    # Model order: encoder conv, encoder blocks by number, then the decoder.
    assert data["layers"] == [
        "encoder.encoders.conv1",
        "encoder.encoders.blocks.2",
        "encoder.encoders.blocks.10",
        "decoder.decoders.blocks.0",
    ]
    assert data["numel"] == [2, 2, 2, 4]
    assert data["sparsity"] == {
        "er": [0.0, 50.0, 0.0, 50.0],
        "asr": [50.0, 100.0, 50.0, 50.0],
        "ic": [100.0, 100.0, 100.0, 100.0],
    }
    names = ["decoder.decoders.ln", "decoder.decoders.token_embedding"]
    names += ["encoder.encoders.ln_post", "encoder.encoders.blocks.1", "ctc.ctc_lo"]
    assert sorted(names, key=layer_order_key) == [
        "encoder.encoders.blocks.1",
        "encoder.encoders.ln_post",
        "decoder.decoders.token_embedding",
        "decoder.decoders.ln",
        "ctc.ctc_lo",
    ]


def test_mask_figures_are_pngs(masks, tmp_path):
    assert is_png(plot_overlap_heatmap(masks, tmp_path / "o.png", {"er": "ER"}))
    assert is_png(plot_overlap_heatmap([[1.0, 0.2], [0.2, 1.0]], tmp_path / "m.png"))
    assert is_png(plot_layer_sparsity(masks, tmp_path / "sub" / "l.png"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "l.png",
        "m.png",
        "o.png",
        "sub",
    ]


ROWS = [
    dict(system="dense", step=10, task="er", metric="accuracy", value=60.0),
    dict(system="dense", step=0, task="er", metric="accuracy", value=70.0),
    dict(system="masked-36%", step=0, task="er", metric="accuracy", value=71.0),
    dict(system="masked-36%", step=10, task="asr", metric="wer", value=12.5),
]


@pytest.mark.parametrize("name", ["s.csv", "s.json"])
def test_series_round_trip_and_curves(tmp_path, name):
    path = write_series(ROWS, tmp_path / name)
    if name.endswith(".csv"):
        assert path.read_text().splitlines()[:2] == [
            "system,step,task,metric,value",
            "dense,10,er,accuracy,60.0",
        ]
    else:
        assert json.loads(path.read_text()) == ROWS
    assert read_series(path) == ROWS
    assert curves_data(ROWS) == {
        "er": {"dense": [(0, 70.0), (10, 60.0)], "masked-36%": [(0, 71.0)]},
        "asr": {"masked-36%": [(10, 12.5)]},
    }


def test_forgetting_figure(tmp_path):
    assert is_png(plot_forgetting_curves(ROWS, tmp_path / "f.png", title="CL: asr"))
    with pytest.raises(DataError, match="no series rows"):
        plot_forgetting_curves([], tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_bad_series_name_file_and_line(tmp_path):
    head = "system,step,task,metric,value\n"
    cases = [
        (head + "dense,0,er,accuracy,70\ndense,x,er,accuracy,1\n", r"s.csv:3: step"),
        (
            head + "dense,0,er,accuracy,70\n\ndense,1,er,accuracy,nan\n",
            "s.csv:4: value",
        ),
        (head + "dense,0,er,accuracy\n", "s.csv:2: 4 fields"),
        (
            head + "dense,0,er,accuracy,7\ndense,0,er,accuracy,8\n",
            "s.csv:3: .*first at",
        ),
        (head + "d,0,er,accuracy,7\nd,1,er,f1,8\n", "s.csv:3: task 'er' has metric"),
        (head + ",0,er,accuracy,7\n", "s.csv:2: system"),
        (head + "d,-1,er,accuracy,7\n", "s.csv:2: step must be >= 0"),
        ("system,step\n", "s.csv:1: header"),
    ]
    bad = tmp_path / "s.csv"
    for text, match in cases:
        bad.write_text(text)
        with pytest.raises(DataError, match=match):
            read_series(bad)
    js = tmp_path / "s.json"
    js.write_text(json.dumps([ROWS[0], {**ROWS[1], "value": "high"}]))
    with pytest.raises(DataError, match=r"s.json: item 2: value"):
        read_series(js)
    js.write_text('[{"system": "d",\n oops]')
    with pytest.raises(DataError, match=r"s.json:2: not valid JSON"):
        read_series(js)
    with pytest.raises(DataError, match="series file not found"):
        read_series(tmp_path / "none.csv")
    with pytest.raises(DataError, match=r"row 2: missing fields \['value'\]"):
        write_series([ROWS[0], {k: v for k, v in ROWS[1].items() if k != "value"}], js)
    assert validate_series([{**ROWS[0], "step": 10.0}])[0]["step"] == 10


def _main(capsys, *args):
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_figures_and_names_bad_input(masks, tmp_path, capsys):
    save_masks(masks, tmp_path / "m")
    for fig in ("overlap", "layers"):
        out = tmp_path / f"{fig}.png"
        code, stdout, _ = _main(
            capsys, fig, "--mask_dir", tmp_path / "m", "--output", out
        )
        assert code == 0 and stdout.strip() == str(out) and is_png(out)
    code, _, _ = _main(
        capsys, "overlap", "--mask_dir", tmp_path / "m", "--output",
        tmp_path / "l.png", "--label", "er=ER", "--title", "Q = 5",
    )  # fmt: skip
    assert code == 0 and is_png(tmp_path / "l.png")
    write_series(ROWS, tmp_path / "s.json")
    code, _, _ = _main(
        capsys, "forgetting", "--series", tmp_path / "s.json", "--output",
        tmp_path / "f.png",
    )  # fmt: skip
    assert code == 0 and is_png(tmp_path / "f.png")
    for args, message in (
        (["forgetting", "--series", tmp_path / "none.csv"], "none.csv"),
        (["layers", "--mask_dir", tmp_path / "nomasks"], "nomasks"),
        (["overlap", "--mask_dir", tmp_path / "m", "--label", "xx=X"], "unknown tasks"),
        (["overlap", "--mask_dir", tmp_path / "m", "--label", "er"], "TASK=LABEL"),
    ):
        code, _, err = _main(capsys, *args, "--output", tmp_path / "g.png")
        assert code == 1 and err.startswith("ERROR: ") and message in err, err
    assert not (tmp_path / "g.png").exists()


def test_cli_draws_the_structure_overlap_of_structured_masks(
    tiny_trained, tmp_path, capsys
):
    # Only this test needs a model's structures.
    from espnet_pruning.pruning.scope import PruningScope
    from espnet_pruning.pruning.structured import structured_mask, structures
    from espnet_pruning.tasks.uslu import USLUTask

    config = tiny_trained / "config.yaml"
    model, _ = USLUTask.build_unmasked_model(config)
    ms = MaskSet.from_model(model, PruningScope(), ["er_iemocap", "ic_fsc"])
    found = structures(model)
    kept = {s.name: torch.arange(s.count) % 2 == 0 for s in found}
    ms.set_mask("er_iemocap", structured_mask(model, kept, ms.shapes))
    save_masks(ms, tmp_path / "m")
    out = tmp_path / "s.png"
    code, stdout, _ = _main(
        capsys, "structures", "--mask_dir", tmp_path / "m", "--train_config",
        config, "--output", out,
    )  # fmt: skip
    assert code == 0 and stdout.strip() == str(out) and is_png(out)
    bad = ms.mask("er_iemocap")
    name = next(n for n in bad if n.endswith("mlp.0.weight"))
    bad[name][0, 0] = not bool(bad[name][0, 0])
    ms.set_mask("ic_fsc", bad)
    save_masks(ms, tmp_path / "bad")
    code, _, err = _main(
        capsys, "structures", "--mask_dir", tmp_path / "bad", "--train_config",
        config, "--output", tmp_path / "b.png",
    )  # fmt: skip
    assert code == 1 and err.startswith("ERROR: ") and "not a structured mask" in err
    assert not (tmp_path / "b.png").exists()
