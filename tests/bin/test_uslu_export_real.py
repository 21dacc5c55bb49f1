"""Per-task export of a Whisper-base subnetwork, checked on real speech: openai-whisper's
own ``whisper.decode`` on the exported ``whisper.pt`` writes the token ids that our
decoder writes with the mask set (AN4 recordings)."""

from pathlib import Path

import pytest
import torch
import whisper
import yaml
from an4 import SDIST, an4_recordings
from whisper.audio import log_mel_spectrogram, pad_or_trim

from espnet_pruning.bin import uslu_export
from espnet_pruning.inference.speech2text import Speech2Text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import prune_global_magnitude
from espnet_pruning.pruning.storage import save_masks
from espnet_pruning.tasks.uslu import USLUTask

BASE = (
    Path(__file__).resolve().parents[2] / "tools" / "downloads" / "whisper" / "base.pt"
)
TASK = "asr_whisper"

pytestmark = pytest.mark.skipif(
    not (BASE.is_file() and SDIST.is_file()),
    reason=f"needs {BASE} (make -C tools whisper-base) and {SDIST} (make -C tools)",
)


@pytest.fixture(scope="module")
def experiment(tiny_trained, tmp_path_factory):
    """Whisper base as a UniverSLU experiment with one task (Whisper's own transcription
    prompt) and a mask set keeping 90 % of its prunable weights."""
    root = tmp_path_factory.mktemp("base_exp")
    conf = yaml.safe_load((tiny_trained / "config.yaml").read_text())
    conf["encoder_conf"] = dict(whisper_checkpoint=str(BASE), do_pad_trim=True)
    conf["decoder_conf"] = dict(whisper_checkpoint=str(BASE))
    conf["task_specifiers"] = {
        "tasks": {
            TASK: dict(
                prompt="<|en|> <|transcribe|>", target="transcript", metric="wer"
            )
        }
    }
    conf["mask_dir"] = None
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(conf))
    model, _ = USLUTask.build_model_from_file(config, None)
    torch.save(model.state_dict(), root / "model.pth")
    ms = MaskSet.from_model(model, PruningScope(), [TASK])
    params = dict(model.named_parameters())
    weights = {n: params[n].detach() for n in ms.names}
    ms.set_mask(TASK, prune_global_magnitude(weights, ms.mask(TASK), 0.1))
    masks = save_masks(ms, root / "masks")
    return config, root / "model.pth", masks


@torch.no_grad()
def test_exported_whisper_decodes_real_speech_as_ours(experiment, tmp_path):
    config, model_file, masks = experiment
    files = uslu_export.export_task(
        config, model_file, TASK, tmp_path, mask_dir=masks, formats=["whisper"]
    )
    reference = whisper.load_model(str(files["whisper"]), device="cpu").eval()
    ours = Speech2Text(config, model_file, TASK, mask_dir=masks, maxlenratio=-100)
    options = whisper.DecodingOptions(
        language="en",
        without_timestamps=True,
        fp16=False,
        suppress_tokens="",
        suppress_blank=False,
    )
    texts = []
    for name, audio in list(an4_recordings().items())[:3]:
        wav = torch.from_numpy(audio)
        result = whisper.decode(
            reference, log_mel_spectrogram(pad_or_trim(wav)), options
        )
        assert ours(audio)[0][2] == result.tokens, name
        texts.append(result.text)
    assert all(t.strip() for t in texts), texts  # real speech, recognised
