"""Mask files: round trip, bit order, atomic replacement, validation.

Property numbers (``# P11``) are those of docs/pruning_pitfalls.md §9.
"""

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from pruning_testlib import random_mask, tiny_whisper

from espnet_pruning.pruning import storage
from espnet_pruning.pruning.masks import MaskError, MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import MaskFileError, load_masks, save_masks


def _maskset(tasks=("er", "ic", "asr")):
    model = tiny_whisper()
    ms = MaskSet.from_model(model, PruningScope(), tasks)
    params = dict(model.named_parameters())
    for i, t in enumerate(tasks):
        ms.set_mask(
            t, random_mask({n: params[n] for n in ms.names}, 0.2 + 0.1 * i, seed=i)
        )
    return model, ms


def test_round_trip_and_size(tmp_path):  # P11
    model, ms = _maskset()
    d = save_masks(ms, tmp_path / "masks")
    loaded = load_masks(
        d,
        expected_shapes={
            n: p.shape for n, p in model.named_parameters() if n in ms.names
        },
    )
    assert loaded == ms and loaded.names == ms.names and loaded.tasks == ms.tasks
    n = ms.numel()
    for t in ms.tasks:
        assert (d / f"{t}.mask").stat().st_size == math.ceil(n / 8)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["names"] == list(ms.names)
    assert manifest["masks"]["ic"]["n_kept"] == ms.kept("ic")
    assert manifest["masks"]["ic"]["per_tensor"] == [
        ms.kept_per_tensor("ic")[x] for x in ms.names
    ]
    assert sorted(os.listdir(tmp_path)) == ["masks"]  # no temporary leftovers
    assert load_masks(d, tasks=["asr"]).tasks == ("asr",)


def test_bit_order_is_documented_little_endian(tmp_path):
    ms = MaskSet(
        {"a": (3,), "b": (2, 3)},
        {
            "t": {
                "a": torch.tensor([1, 0, 0]),
                "b": torch.tensor([[0, 1, 1], [0, 0, 1]]),
            }
        },
    )
    d = save_masks(ms, tmp_path / "m")
    # Flat order a[0..2], b[0,0..2], b[1,0..2]: 1 0 0 0 1 1 0 0 | 1 → LSB first.
    assert (d / "t.mask").read_bytes() == bytes([0b00110001, 0b00000001])


def test_replace_existing_set_atomically(tmp_path, monkeypatch):  # P15
    _, ms = _maskset()
    d = save_masks(ms, tmp_path / "masks")
    _, other = _maskset(("x",))
    save_masks(other, d)
    assert load_masks(d) == other
    assert sorted(os.listdir(d)) == ["manifest.json", "x.mask"]
    # A failure half-way leaves the previous set intact and no temporary directory.
    calls = []

    def failing(path, pieces):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(path, pieces)

    original = storage._write_packed
    monkeypatch.setattr(storage, "_write_packed", failing)
    with pytest.raises(OSError, match="disk full"):
        save_masks(ms, d)
    assert load_masks(d) == other
    assert sorted(os.listdir(tmp_path)) == ["masks"]


def test_refuses_to_replace_a_non_mask_directory(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "valid.acc.best.pth").write_bytes(b"x")
    with pytest.raises(MaskFileError, match="not a mask directory"):
        save_masks(MaskSet.ones(["t"], {"w": (2,)}), tmp_path / "exp")
    assert (tmp_path / "exp" / "valid.acc.best.pth").exists()


@pytest.fixture
def saved(tmp_path):
    model, ms = _maskset()
    return model, ms, save_masks(ms, tmp_path / "masks")


def test_missing_manifest(saved):
    _, _, d = saved
    (d / "manifest.json").unlink()
    with pytest.raises(MaskFileError, match="manifest.json: missing manifest"):
        load_masks(d)
    with pytest.raises(MaskFileError, match="does not exist"):
        load_masks(d / "nope")


def test_missing_file(saved):
    _, _, d = saved
    (d / "ic.mask").unlink()
    with pytest.raises(MaskFileError, match="ic.mask: missing mask file"):
        load_masks(d)


def test_truncated_and_oversized(saved):
    _, _, d = saved
    data = (d / "er.mask").read_bytes()
    (d / "er.mask").write_bytes(data[:-1])
    with pytest.raises(MaskFileError, match="er.mask: truncated"):
        load_masks(d)
    (d / "er.mask").write_bytes(data + b"\0")
    with pytest.raises(MaskFileError, match="er.mask: oversized"):
        load_masks(d)


def test_flipped_byte_fails_checksum(saved):
    _, _, d = saved
    data = bytearray((d / "asr.mask").read_bytes())
    data[10] ^= 0x04
    (d / "asr.mask").write_bytes(bytes(data))
    with pytest.raises(MaskFileError, match="asr.mask: checksum mismatch"):
        load_masks(d)


def _edit_manifest(d, fn, checksum=True):
    """Edit the manifest; with ``checksum``, as a forger who updates the checksum."""
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    if checksum:
        m["checksum"] = storage.manifest_checksum(m)
    (d / "manifest.json").write_text(json.dumps(m))


def test_bad_json_version_and_counts(saved):
    _, _, d = saved
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text[:-20])
    with pytest.raises(MaskFileError, match="manifest.json: invalid JSON"):
        load_masks(d)
    (d / "manifest.json").write_text(text)
    _edit_manifest(d, lambda m: m.update(version=99))
    with pytest.raises(MaskFileError, match="format version 99"):
        load_masks(d)
    (d / "manifest.json").write_text(text)

    def wrong_count(m):
        m["masks"]["ic"]["per_tensor"][3] += 1

    _edit_manifest(d, wrong_count)
    with pytest.raises(MaskFileError, match="ic.mask: tensor .* manifest says"):
        load_masks(d)
    (d / "manifest.json").write_text(text)
    _edit_manifest(d, lambda m: m["masks"]["er"].update(n_kept=1))
    with pytest.raises(MaskFileError, match="er.mask: kept count mismatch"):
        load_masks(d)
    (d / "manifest.json").write_text(text)
    _edit_manifest(d, lambda m: m.update(names=m["names"][::-1]))
    with pytest.raises(MaskFileError, match="malformed manifest"):
        load_masks(d)


def test_masks_for_another_model(saved):
    _, _, d = saved
    other = tiny_whisper(n_text_state=24)
    shapes = {
        n: p.shape for n, p in other.named_parameters() if n in load_masks(d).names
    }
    with pytest.raises(
        MaskFileError, match="decoder.blocks.0.attn.key.weight has shape"
    ):
        load_masks(d, expected_shapes=shapes)
    shapes = {**load_masks(d).shapes, "encoder.extra.weight": (2, 2)}
    with pytest.raises(
        MaskFileError, match="no mask for the model's tensor encoder.extra"
    ):
        load_masks(d, expected_shapes=shapes)


def test_no_pickle_and_model_unaffected(saved):  # P11
    model, ms, d = saved
    for path in d.iterdir():
        assert not path.read_bytes().startswith(b"\x80")  # not a pickle stream
    keys = list(model.state_dict())
    pickle.loads(pickle.dumps(model))
    assert list(model.state_dict()) == keys


def test_large_odd_sized_tensors_stream(tmp_path, monkeypatch):
    # Tensors larger than a packing chunk and not multiples of 8.
    monkeypatch.setattr(storage, "_CHUNK", 16)
    g = torch.Generator().manual_seed(0)
    shapes = {"a": (37,), "b": (5, 7), "c": (3,)}
    ms = MaskSet(
        shapes, {"t": {n: torch.rand(s, generator=g) > 0.5 for n, s in shapes.items()}}
    )
    d = save_masks(ms, tmp_path / "m")
    assert load_masks(d) == ms
    flat = np.concatenate([ms.mask("t")[n].reshape(-1).numpy() for n in sorted(shapes)])
    assert (d / "t.mask").read_bytes() == np.packbits(flat, bitorder="little").tobytes()


# ------------------------------------------------------------------ self-checking
def _small_set(tmp_path):
    """A small real mask set (one task over a 1-layer Whisper) and its directory."""
    model = tiny_whisper(n_audio_layer=1, n_text_layer=1, n_vocab=8)
    ms = MaskSet.from_model(model, PruningScope(), ["ic"])
    params = dict(model.named_parameters())
    ms.set_mask("ic", random_mask({n: params[n] for n in ms.names}, 0.5, seed=0))
    return model, ms, save_masks(ms, tmp_path / "masks")


def test_manifest_records_scope_and_checksum(saved):
    model, ms, d = saved
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["version"] == 2
    assert manifest["scope"] == PruningScope().to_dict()
    assert manifest["n_model_params"] == sum(p.numel() for p in model.parameters())
    assert manifest["checksum"] == storage.manifest_checksum(manifest)
    assert load_masks(d).scope == PruningScope()


def test_unchecksummed_edits_are_rejected(saved):
    _, ms, d = saved
    text = (d / "manifest.json").read_text()
    # The silent cases: Param% base and a renamed tensor keeping the order.
    _edit_manifest(d, lambda m: m.update(n_model_params=m["n_model_params"] + 9), False)
    with pytest.raises(MaskFileError, match="manifest checksum mismatch"):
        load_masks(d)
    (d / "manifest.json").write_text(text)
    name = ms.names[0]
    renamed = name[:-1] + chr(ord(name[-1]) - 1)
    assert renamed < ms.names[1]
    _edit_manifest(d, lambda m: m["names"].__setitem__(0, renamed), False)
    with pytest.raises(MaskFileError, match="manifest checksum mismatch"):
        load_masks(d)


def test_every_single_byte_flip_is_rejected_or_harmless(tmp_path):
    """Flip each bit of each byte of a small manifest: the load fails with a
    MaskFileError, or it returns exactly the saved set (a whitespace change)."""
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)
    )
    ms = MaskSet.from_model(model, PruningScope(), ["ic"])
    ms.set_mask("ic", {n: torch.rand(s) > 0.5 for n, s in ms.shapes.items()})
    d = save_masks(ms, tmp_path / "masks")
    original = (d / "manifest.json").read_bytes()
    rejected = harmless = 0
    fd = os.open(d / "manifest.json", os.O_RDWR)  # in place: no re-open per flip
    try:
        for i in range(len(original)):
            for bit in range(8):
                flipped = original[i] ^ (1 << bit)
                os.pwrite(fd, bytes([flipped]), i)
                try:
                    loaded = load_masks(d)
                except MaskFileError:
                    rejected += 1
                    continue
                assert loaded == ms, (i, bit)
                assert chr(original[i]).isspace() and chr(flipped).isspace(), (i, bit)
                harmless += 1
            os.pwrite(fd, original[i : i + 1], i)
    finally:
        os.close(fd)
    print(f"{len(original)} bytes: {rejected} flips rejected, {harmless} harmless")
    assert rejected + harmless == 8 * len(original) > 5000
    assert load_masks(d) == ms


def test_masks_must_cover_exactly_the_models_prunable_tensors(tmp_path):
    """Masks of a model with fewer layers, of another scope or another parameter
    count are refused, naming the folder and the first differing tensors."""
    model = tiny_whisper()
    fewer = load_masks(
        save_masks(
            MaskSet.from_model(tiny_whisper(n_audio_layer=1), PruningScope(), ["ic"]),
            tmp_path / "fewer",
        )
    )
    with pytest.raises(
        MaskError, match=r"mask set .*fewer: .*no mask for \['encoder.blocks.1.attn"
    ):
        fewer.check_compatible(model)
    wider = MaskSet.from_model(model, PruningScope(include_bias=True), ["ic"])
    wider.scope = PruningScope()
    with pytest.raises(MaskError, match="masks for tensors it lacks"):
        wider.check_compatible(model)
    ms = MaskSet.from_model(model, PruningScope(), ["ic"])
    ms.n_model_params += 1
    with pytest.raises(MaskError, match="parameters; this model has"):
        ms.check_compatible(model)
    with pytest.raises(MaskError, match="records no pruning scope"):
        MaskSet.ones(["ic"], ms.shapes).check_compatible(model)
    MaskSet.from_model(model, PruningScope(), ["ic"]).check_compatible(model)


def _as_version1(d):
    m = json.loads((d / "manifest.json").read_text())
    del m["checksum"], m["scope"]
    m["version"] = 1
    (d / "manifest.json").write_text(json.dumps(m, indent=1))


def test_version1_sets_are_refused_and_upgraded(tmp_path):
    model, ms, d = _small_set(tmp_path)
    _as_version1(d)
    with pytest.raises(
        MaskFileError, match="version 1 .*uslu_masks upgrade --mask_dir"
    ):
        load_masks(d)
    other = tiny_whisper(n_audio_layer=2, n_text_layer=1, n_vocab=8)
    with pytest.raises(MaskFileError, match="no mask for"):
        storage.upgrade_masks(d, other, PruningScope())
    storage.upgrade_masks(d, model, PruningScope())
    assert load_masks(d) == ms


def test_next_save_cleans_debris_and_restores_a_set_moved_aside(tmp_path):
    _, ms, d = _small_set(tmp_path)
    (tmp_path / ".masks.tmp-killed").mkdir()
    (tmp_path / ".masks.tmp-killed" / "ic.mask").write_bytes(b"\0")
    aside = tmp_path / ".masks.old-killed"
    aside.mkdir()
    os.rename(d, aside / "set")  # a kill between the two renames of a replacement
    with pytest.raises(MaskFileError, match="interrupted save left the previous set"):
        load_masks(d)
    storage._clean_debris(d)
    assert sorted(os.listdir(tmp_path)) == ["masks"] and load_masks(d) == ms


def test_killed_save_keeps_the_last_complete_set(tmp_path):
    """SIGKILL a real process before and after each rename of a replacing save: the
    directory then holds the old set, the new set, or (between the renames) nothing
    while the old set waits aside; the next save ends with the new set, no debris."""
    import signal

    _, old, d = _small_set(tmp_path)
    new = MaskSet(old.shapes, {"ic": old.mask("ic")}, old.n_model_params, old.scope)
    new.set_mask("ic", {n: ~m for n, m in old.mask("ic").items()})
    points = [(n, phase) for n in (1, 2) for phase in ("before", "after")]
    for n, phase in points:
        pid = os.fork()
        if pid == 0:
            calls = []
            rename = os.rename

            def killing_rename(*args):
                calls.append(args)
                if len(calls) == n and phase == "before":
                    os.kill(os.getpid(), signal.SIGKILL)
                rename(*args)
                if len(calls) == n and phase == "after":
                    os.kill(os.getpid(), signal.SIGKILL)

            try:
                os.rename = killing_rename
                save_masks(new, d)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), (n, phase)
        if d.exists():
            assert load_masks(d) in (old, new), (n, phase)
        else:
            assert (n, phase) in ((1, "after"), (2, "before"))
        save_masks(new, d)
        assert load_masks(d) == new and sorted(os.listdir(tmp_path)) == ["masks"]
        save_masks(old, d)
