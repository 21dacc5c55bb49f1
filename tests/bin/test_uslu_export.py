"""Per-task export: openai-whisper's own model code gives our logits, the plain checkpoint
decodes without masks as the masked model does, the sparse file is small and exact."""

import pytest
import soundfile as sf
import torch
import whisper
import yaml
from tiny import masked_model_args
from whisper.audio import log_mel_spectrogram, pad_or_trim

from espnet_pruning.bin import uslu_export
from espnet_pruning.inference.speech2text import Speech2Text
from espnet_pruning.pruning.sparse import SparseFileError, load_sparse_state
from espnet_pruning.tasks.uslu import USLUTask

TASK = "er_iemocap"


@pytest.fixture(scope="module")
def exported(tiny_trained, tiny_er_masks, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "er"
    uslu_export.main(
        [
            "--task",
            TASK,
            *masked_model_args(tiny_trained, tiny_er_masks),
            "--output_dir",
            str(out),
        ]
    )
    return out


@pytest.fixture(scope="module")
def subnetwork(tiny_trained, tiny_er_masks):
    """Our model with ER's mask applied (m ⊙ θ)."""
    from espnet_pruning.pruning.storage import load_masks

    model, _ = USLUTask.build_model_from_file(
        tiny_trained / "config.yaml", tiny_trained / "valid.loss.best.pth"
    )
    mask = load_masks(tiny_er_masks).mask(TASK)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in mask.items():
            params[name].mul_(m.to(params[name].dtype))
    return model.eval(), mask


def test_openai_whisper_computes_our_logits(exported, subnetwork, tiny_data):
    model, _ = subnetwork
    reference = whisper.load_model(str(exported / "whisper.pt"), device="cpu").eval()
    prompt = (exported / "prompt.txt").read_text().split()
    ids = model.token_list
    tokens = torch.tensor(
        [[ids.index(t) for t in ["<|startoftranscript|>", *prompt, "<|notimestamps|>"]]]
    )
    wav = (tiny_data / "valid" / "wav.scp").read_text().split()[1]
    audio = torch.from_numpy(sf.read(wav, dtype="float32")[0])
    model.encoder.do_pad_trim = True  # openai-whisper's encoder takes 30 s
    try:
        with torch.no_grad():
            ours_enc = model.encode(audio[None], torch.tensor([audio.numel()]))[0]
            ours = model.decoder(ours_enc, None, tokens, None)[0]
            theirs_enc = reference.encoder(
                log_mel_spectrogram(pad_or_trim(audio))[None]
            )
            theirs = reference.logits(tokens, theirs_enc)
    finally:
        model.encoder.do_pad_trim = False
    assert torch.allclose(ours_enc, theirs_enc, atol=1e-4)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert ours.abs().max() > 1.0  # not vacuous


def test_plain_checkpoint_decodes_the_subnetwork_without_masks(
    exported, tiny_trained, tiny_er_masks, tiny_data
):
    conf = yaml.safe_load((exported / "config.yaml").read_text())
    assert conf["mask_dir"] is None
    assert "whisper_checkpoint" not in conf["decoder_conf"]
    plain = Speech2Text(
        exported / "config.yaml", exported / "model.pth", TASK, maxlenratio=-6
    )
    assert plain.switcher is None and plain.model.masked_training is None
    masked = Speech2Text(
        tiny_trained / "config.yaml",
        tiny_trained / "valid.loss.best.pth",
        TASK,
        maxlenratio=-6,
        mask_dir=tiny_er_masks,
    )
    for line in (tiny_data / "valid" / "wav.scp").read_text().splitlines():
        speech = sf.read(line.split()[1], dtype="float32")[0]
        assert plain(speech) == masked(speech)


def test_sparse_file_is_exact_and_small(exported, subnetwork):
    model, mask = subnetwork
    state = model.state_dict()
    back = load_sparse_state(exported / "model.sparse")
    assert list(back) == list(state)
    for name, value in state.items():
        assert back[name].dtype == value.dtype and torch.equal(back[name], value), name
    n_weights = sum(v.numel() for v in state.values())
    kept = sum(int(mask[n].sum()) if n in mask else v.numel() for n, v in state.items())
    density = kept / n_weights
    assert 0.6 < density < 0.7
    dense_size = (exported / "model.pth").stat().st_size
    size = (exported / "model.sparse").stat().st_size
    assert size <= density * dense_size + n_weights / 8


def test_corrupt_sparse_file_is_a_clear_error(exported, tmp_path):
    data = bytearray((exported / "model.sparse").read_bytes())
    data[-1] ^= 0xFF
    bad = tmp_path / "bad.sparse"
    bad.write_bytes(bytes(data))
    with pytest.raises(SparseFileError, match="checksum"):
        load_sparse_state(bad)


def test_unknown_task_is_one_error_line(tiny_trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        uslu_export.main(
            [
                "--task",
                "ic_atis",
                "--train_config",
                str(tiny_trained / "config.yaml"),
                "--model_file",
                str(tiny_trained / "valid.loss.best.pth"),
                "--output_dir",
                str(tmp_path / "x"),
            ]
        )
    assert exit_.value.code == 1
    assert "ERROR: unknown task 'ic_atis'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_compiled_export_is_smaller_loads_strictly_and_decodes_like_the_mask(
    tiny_trained, tiny_data, tmp_path, capsys
):
    """A structured mask (whole heads and FFN units): ``--formats compiled`` writes the
    smaller model and its structure file; uslu_inference's loader builds those shapes
    from the dense config and loads the weights strictly; decoding equals the masked
    model's. An unstructured mask gets one error line."""
    # Only these tests build their own mask sets.
    from espnet_pruning.pruning.masks import MaskSet
    from espnet_pruning.pruning.scope import PruningScope
    from espnet_pruning.pruning.storage import save_masks
    from espnet_pruning.pruning.structure_file import (
        StructureFileError,
        load_structure,
    )
    from espnet_pruning.pruning.structured import structured_mask, structures

    model, _ = USLUTask.build_unmasked_model(tiny_trained / "config.yaml")
    masks = MaskSet.from_model(model, PruningScope(), [TASK])
    kept = {s.name: torch.arange(s.count) % 3 != 1 for s in structures(model)}
    masks.set_mask(TASK, structured_mask(model, kept, masks.shapes))
    save_masks(masks, tmp_path / "m")
    out = tmp_path / "er"
    args = ["--task", TASK, *masked_model_args(tiny_trained, tmp_path / "m")]
    uslu_export.main([*args, "--output_dir", str(out), "--formats", "compiled"])
    task, got = load_structure(out / "structure.json")
    assert task == TASK and all(torch.equal(got[n], k) for n, k in kept.items())
    compiled = Speech2Text(
        out / "config.yaml",
        out / "compiled.pth",
        TASK,
        maxlenratio=-6,
        structure_file=out / "structure.json",
    )
    masked = Speech2Text(
        tiny_trained / "config.yaml",
        tiny_trained / "valid.loss.best.pth",
        TASK,
        maxlenratio=-6,
        mask_dir=tmp_path / "m",
    )
    n = sum(p.numel() for p in compiled.model.parameters())
    assert n < sum(p.numel() for p in masked.model.parameters())
    for line in (tiny_data / "valid" / "wav.scp").read_text().splitlines():
        speech = sf.read(line.split()[1], dtype="float32")[0]
        a, b = compiled(speech), masked(speech)
        # Same hypotheses; scores equal up to float reassociation in smaller matrices.
        assert [r[:3] for r in a] == [r[:3] for r in b]
        assert [r[3] for r in a] == pytest.approx([r[3] for r in b], abs=1e-4)
    # Strict: the dense checkpoint does not fit the compiled shapes.
    with pytest.raises(RuntimeError, match="size mismatch|Missing key"):
        USLUTask.build_model_from_file(
            out / "config.yaml",
            tiny_trained / "valid.loss.best.pth",
            structure_file=out / "structure.json",
        )
    (tmp_path / "bad.json").write_text('{"format": "espnet_pruning.structure"}')
    with pytest.raises(StructureFileError, match="bad.json: version"):
        USLUTask.build_model_from_file(
            out / "config.yaml", None, structure_file=tmp_path / "bad.json"
        )
    # An unstructured mask: one error line, nothing written.
    unstructured = masks.mask(TASK)
    name = next(n for n in unstructured if n.endswith("mlp.0.weight"))
    unstructured[name][0, 0] = not bool(unstructured[name][0, 0])
    masks.set_mask(TASK, unstructured)
    save_masks(masks, tmp_path / "bad")
    with pytest.raises(SystemExit) as e:
        uslu_export.main(
            [
                "--task",
                TASK,
                *masked_model_args(tiny_trained, tmp_path / "bad"),
                "--output_dir",
                str(tmp_path / "x"),
                "--formats",
                "compiled",
            ]
        )
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ERROR: ") and "no compiled export" in err
    assert not (tmp_path / "x" / "compiled.pth").exists()
