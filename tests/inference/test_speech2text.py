"""Speech2Text on a trained tiny model: the cached decoder gives today's token ids (greedy
and beam 4, dense and with a task mask), batches equal one-by-one, bad audio is an error.
"""

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_pruning.errors import DataError, InputError
from espnet_pruning.inference.speech2text import Speech2Text


@pytest.fixture(scope="module")
def speeches(tiny_data):
    lines = (tiny_data / "valid" / "wav.scp").read_text().splitlines()
    return [sf.read(line.split()[1], dtype="float32")[0] for line in lines]


def s2t(exp, **kwargs):
    return Speech2Text(
        exp / "config.yaml",
        exp / "valid.loss.best.pth",
        kwargs.pop("task", "er_iemocap"),
        maxlenratio=-6,
        **kwargs,
    )


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_cached_decoder_gives_todays_token_ids(
    tiny_trained, tiny_er_masks, speeches, beam, masked
):
    opts = dict(beam_size=beam, nbest=beam, mask_dir=tiny_er_masks if masked else None)
    new, old = s2t(tiny_trained, **opts), s2t(tiny_trained, kv_cache=False, **opts)
    batched = new.decode_batch(speeches)
    for speech, got_batched in zip(speeches, batched):
        ref, got = old(speech), new(speech)
        assert [r[2] for r in ref] == [g[2] for g in got] == [b[2] for b in got_batched]
        assert [g[3] for g in got] == pytest.approx([r[3] for r in ref], abs=1e-4)
    texts = [r[0][0] for r in batched]
    assert len(texts) == len(speeches) == 6
    if not masked:  # not vacuous: the tiny model writes its emotion labels
        assert {t.split()[0] for t in texts} == {"em:hap", "em:sad"}


def test_unusable_audio_is_a_data_error(tiny_trained):
    decoder = s2t(tiny_trained)
    for audio, message in (
        (np.zeros(0, np.float32), "0 samples"),
        (np.zeros(150, np.float32), "150 samples"),
        (np.full(8000, np.nan, np.float32), "NaN"),
        (np.zeros((8000, 2), np.float32), "one channel"),
    ):
        with pytest.raises(DataError, match=message):
            decoder(audio)
    assert decoder(torch.zeros(8000))  # silence is fine


def test_one_model_serves_every_task(tiny_trained, tiny_er_masks, speeches):
    """set_task switches prompt and subnetwork: the same results as a model loaded for
    that task, and back to ER's weights m ⊙ θ exactly."""
    shared = s2t(tiny_trained, mask_dir=tiny_er_masks)
    er_weights = {k: v.clone() for k, v in shared.model.state_dict().items()}
    er = [shared(s) for s in speeches]
    shared.set_task("asr_librispeech")
    fresh = s2t(tiny_trained, task="asr_librispeech", mask_dir=tiny_er_masks)
    assert [shared(s) for s in speeches] == [fresh(s) for s in speeches]
    # ASR's mask is dense: the weights ER's mask prunes are back
    assert not all(
        torch.equal(v, fresh.model.state_dict()[k]) for k, v in er_weights.items()
    )
    shared.set_task("er_iemocap")
    assert [shared(s) for s in speeches] == er
    for k, v in shared.model.state_dict().items():
        assert torch.equal(v, er_weights[k]), k


def test_a_raw_prompt_decodes_a_task_outside_the_specifiers(tiny_trained, speeches):
    named = s2t(tiny_trained)
    raw = s2t(tiny_trained, task="my_er", prompt="<|en|> <|er|> <|iemocap|>")
    assert raw.primer == named.primer
    assert [raw(s) for s in speeches] == [named(s) for s in speeches]
    with pytest.raises(InputError, match="not in the token list"):
        raw.set_task("other", prompt="<|en|> <|nosuchtask|>")


def test_compiled_structures_decode_like_the_masked_model(
    tiny_trained, speeches, tmp_path
):
    """A structured mask (whole heads and FFN units, HJ-Pruning's kind): each task's
    compiled model is smaller and decodes what the masked model decodes; a task
    without structure loss decodes with the dense model; a mask that is not
    structured is one named error."""
    # Only this test of the module builds a mask set.
    from espnet_pruning.pruning.masks import MaskSet
    from espnet_pruning.pruning.scope import PruningScope
    from espnet_pruning.pruning.storage import save_masks
    from espnet_pruning.pruning.structured import structured_mask, structures
    from espnet_pruning.tasks.uslu import USLUTask

    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    masks = MaskSet.from_model(model, PruningScope(), ["er_iemocap", "ic_fsc"])
    g = torch.Generator().manual_seed(0)
    found = structures(model)
    kept = {s.name: torch.rand(s.count, generator=g) < 0.7 for s in found}
    for s in found:  # the decoder's first block without cross-attention and FFN
        if s.name.startswith("decoder.") and ".0." in s.name and s.kind != "self_attn":
            kept[s.name] = torch.zeros(s.count, dtype=torch.bool)
    masks.set_mask("er_iemocap", structured_mask(model, kept, masks.shapes))
    save_masks(masks, tmp_path / "masks")
    masked = s2t(tiny_trained, mask_dir=tmp_path / "masks", beam_size=2)
    compiled = s2t(
        tiny_trained, mask_dir=tmp_path / "masks", beam_size=2, compile_structures=True
    )
    dense = sum(p.numel() for p in masked.model.parameters())
    assert sum(p.numel() for p in compiled.model.parameters()) < dense
    for speech in speeches:
        a, b = compiled(speech), masked(speech)
        # Same hypotheses; scores equal up to float reassociation in smaller matrices.
        assert [r[:3] for r in a] == [r[:3] for r in b]
        assert [r[3] for r in a] == pytest.approx([r[3] for r in b], abs=1e-4)
    compiled.set_task("asr_librispeech")  # no mask of its own: the dense model
    assert sum(p.numel() for p in compiled.model.parameters()) == dense
    bad = {n: m.clone() for n, m in masks.mask("er_iemocap").items()}
    name = next(n for n in bad if n.endswith("mlp.0.weight"))
    bad[name][0, 0] = not bool(bad[name][0, 0])
    masks.set_mask("ic_fsc", bad)
    save_masks(masks, tmp_path / "bad")
    with pytest.raises(InputError, match="task ic_fsc: cannot compile it"):
        s2t(
            tiny_trained,
            task="ic_fsc",
            mask_dir=tmp_path / "bad",
            compile_structures=True,
        )
