"""Packing a trained system the ESPnet way and decoding from it with from_pretrained."""

import shutil
import zipfile

import pytest
import soundfile as sf
from tiny import masked_model_args

from espnet_pruning.bin import uslu_pack
from espnet_pruning.inference.packing import PackError
from espnet_pruning.inference.speech2text import Speech2Text


@pytest.fixture(scope="module")
def packed(tiny_trained, tiny_er_masks, tmp_path_factory):
    root = tmp_path_factory.mktemp("pack")
    (root / "RESULTS.md").write_text("# results\n")
    (root / "figures").mkdir()
    (root / "figures" / "overlap.png").write_bytes(b"\x89PNG fake")
    uslu_pack.main(
        [
            *masked_model_args(tiny_trained, tiny_er_masks),
            "--option",
            str(root / "RESULTS.md"),
            "--option",
            str(root / "figures"),
            "--outpath",
            str(root / "out" / "system.zip"),
        ]
    )
    return root / "out" / "system.zip"


def test_archive_holds_the_system(packed):
    names = set(zipfile.ZipFile(packed).namelist())
    for name in (
        "meta.yaml",
        "exp/config.yaml",
        "exp/model.pth",
        "exp/masks/manifest.json",
        "exp/sha256sums.txt",
        "RESULTS.md",
        "figures/overlap.png",
    ):
        assert name in names, name
    assert not [p for p in packed.parent.iterdir() if p.name.startswith(".pack.")]


def test_from_pretrained_decodes_as_the_experiment(
    packed, tiny_trained, tiny_er_masks, tiny_data
):
    original = Speech2Text(
        tiny_trained / "config.yaml",
        tiny_trained / "valid.loss.best.pth",
        "er_iemocap",
        maxlenratio=-5,
        mask_dir=tiny_er_masks,
    )
    from_zip = Speech2Text.from_pretrained(packed, task="er_iemocap", maxlenratio=-5)
    unpacked = packed.with_name(packed.name + ".unpacked")
    # the unpacked directory; the prompt given as a raw string
    from_dir = Speech2Text.from_pretrained(
        unpacked, task="er_iemocap", prompt="<|en|> <|er|> <|iemocap|>", maxlenratio=-5
    )
    assert from_zip.switcher is not None  # the packed mask set is used
    for line in (tiny_data / "valid" / "wav.scp").read_text().splitlines()[:3]:
        speech = sf.read(line.split()[1], dtype="float32")[0]
        assert from_zip(speech) == from_dir(speech) == original(speech)


def test_corrupt_or_missing_pack_is_a_clear_error(packed, tmp_path):
    with pytest.raises(PackError, match="not found"):
        Speech2Text.from_pretrained(tmp_path / "none.zip", task="er_iemocap")
    unpacked = packed.with_name(packed.name + ".unpacked")
    copy = tmp_path / "copy"
    shutil.copytree(unpacked, copy)
    with open(copy / "exp" / "model.pth", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(PackError, match="exp/model.pth is corrupt"):
        Speech2Text.from_pretrained(copy, task="er_iemocap")
