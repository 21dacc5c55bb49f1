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
