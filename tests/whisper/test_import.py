"""whisper_import against the libraries that define each format.

* Hugging Face: a tiny random ``WhisperForConditionalGeneration`` built by transformers gives
  the same logits through our import as through transformers' own forward.
* CTranslate2: the same model converted by CTranslate2's own converter imports to the same
  weights (float32 exactly; float16 as the weights cast to float16).
* ESPnet: a model built by ESPnet's own ``ASRTask`` (its stock ``whisper`` encoder and decoder
  over a tiny local Whisper), with a token list whose added tokens are in another order than
  ours, gives the same logits through our import as through ESPnet's model.
* Every bad input is one ``ERROR:`` line naming the file and tensor or token.
"""

import base64
import contextlib
import gzip
import hashlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
import yaml
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.bin import whisper_import
from espnet_pruning.whisper.checkpoint import init_whisper_parameters
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder
from espnet_pruning.whisper.openai_format import save_whisper_checkpoint
from espnet_pruning.whisper.tokenizer import (
    WhisperTokenizer,
    build_token_list,
    timestamp_tokens,
    whisper_base_tokens,
)

transformers = pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2")

#: Heads of width 64, as in every released Whisper (ESPnet experiments need no --dims_from).
DIMS = dict(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=128,
    n_audio_head=2,
    n_audio_layer=2,
    n_vocab=51865,
    n_text_ctx=448,
    n_text_state=128,
    n_text_head=2,
    n_text_layer=2,
)
PROMPT = [50258, 50259, 50359, 50363]


def import_cli(*args, check=True):
    """Run the CLI in this process (saves a torch import per call); exit code and stderr."""
    stderr = io.StringIO()
    returncode = 0
    with contextlib.redirect_stderr(stderr):
        try:
            whisper_import.main([str(a) for a in args])
        except SystemExit as e:
            returncode = e.code
    proc = subprocess.CompletedProcess(args, returncode, "", stderr.getvalue())
    if check:
        assert returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    """A tiny random transformers Whisper saved as a Hugging Face folder."""
    config = transformers.WhisperConfig(
        vocab_size=51865,
        num_mel_bins=80,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=2,
        decoder_attention_heads=2,
        d_model=64,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=1500,
        max_target_positions=448,
    )
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    folder = tmp_path_factory.mktemp("hf") / "whisper-tiny-random"
    model.save_pretrained(folder)
    return model, folder


def our_logits(checkpoint: Path, mel_or_audio, tokens, n_vocab=51865, from_mel=False):
    encoder = WhisperEncoder(whisper_checkpoint=str(checkpoint)).eval()
    decoder = WhisperDecoder(
        vocab_size=n_vocab,
        encoder_output_size=encoder.output_size(),
        whisper_checkpoint=str(checkpoint),
    ).eval()
    with torch.no_grad():
        if from_mel:
            enc = encoder.encoders(mel_or_audio)
        else:
            lengths = torch.tensor([mel_or_audio.size(1)])
            enc, _, _ = encoder(mel_or_audio, lengths)
        logits, _ = decoder(enc, None, tokens, None)
    return logits


def test_hf_import_gives_transformers_logits(hf_model, tmp_path):
    model, folder = hf_model
    out = tmp_path / "hf.pt"
    import_cli("--from", "hf", folder, "--output", out)
    reference = whisper.load_model(str(out), device="cpu")  # strict keys
    assert reference.dims.n_audio_state == 64 and reference.dims.n_text_layer == 2
    torch.manual_seed(1)
    mel = torch.randn(1, 80, 3000)
    tokens = torch.tensor([PROMPT + [440, 2068, 1000]])
    with torch.no_grad():
        expected = model(input_features=mel, decoder_input_ids=tokens).logits
    got = our_logits(out, mel, tokens, from_mel=True)
    assert (got - expected).abs().max() <= 1e-5


def test_ct2_import_equals_hf_import(hf_model, tmp_path):
    from ctranslate2.converters import TransformersConverter

    _, folder = hf_model
    hf_pt = tmp_path / "hf.pt"
    import_cli("--from", "hf", folder, "--output", hf_pt)
    expected = torch.load(hf_pt, weights_only=True)
    for quantization, dtype in (("float32", torch.float32), ("float16", torch.float16)):
        ct2_dir = tmp_path / f"ct2-{quantization}"
        TransformersConverter(str(folder)).convert(
            str(ct2_dir), quantization=quantization
        )
        out = tmp_path / f"ct2-{quantization}.pt"
        import_cli("--from", "ct2", ct2_dir, "--output", out)
        got = torch.load(out, weights_only=True)
        assert got["dims"] == expected["dims"]
        want = expected["model_state_dict"]
        assert set(got["model_state_dict"]) == set(want)
        for name, tensor in got["model_state_dict"].items():
            assert tensor.dtype == dtype, name
            assert torch.equal(tensor, want[name].to(dtype)), name


def test_dtype_option_and_openai_roundtrip(hf_model, tmp_path):
    _, folder = hf_model
    fp16 = tmp_path / "fp16.pt"
    import_cli("--from", "hf", folder, "--output", fp16, "--dtype", "fp16")
    fp32 = tmp_path / "fp32.pt"
    import_cli("--from", "openai", fp16, "--output", fp32, "--dtype", "fp32")
    a = torch.load(fp16, weights_only=True)["model_state_dict"]
    b = torch.load(fp32, weights_only=True)["model_state_dict"]
    assert all(a[k].dtype == torch.float16 and b[k].dtype == torch.float32 for k in a)
    assert all(torch.equal(a[k].float(), b[k]) for k in a)


def error_of(proc):
    assert proc.returncode == 1, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("ERROR:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_bad_inputs_are_one_error_line(hf_model, tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = hf_model
    out = tmp_path / "out.pt"
    # Unknown layout: a folder with neither weights file.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((folder / "config.json").read_text())
    assert "no model.safetensors" in error_of(
        import_cli("--from", "hf", empty, "--output", out, check=False)
    )
    assert "CTranslate2 model file not found" in error_of(
        import_cli("--from", "ct2", folder, "--output", out, check=False)
    )
    # A missing tensor.
    broken = tmp_path / "missing"
    broken.mkdir()
    (broken / "config.json").write_text((folder / "config.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["model.decoder.layers.1.fc2.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    line = error_of(import_cli("--from", "hf", broken, "--output", out, check=False))
    assert "decoder.blocks.1.mlp.2.weight" in line and str(broken) in line
    # A shape openai-whisper's model cannot hold.
    config = json.loads((folder / "config.json").read_text())
    config["encoder_ffn_dim"] = 128
    (broken / "config.json").write_text(json.dumps(config))
    line = error_of(import_cli("--from", "hf", broken, "--output", out, check=False))
    assert "encoder_ffn_dim" in line and "config.json" in line
    # A truncated CTranslate2 file.
    from ctranslate2.converters import TransformersConverter

    ct2_dir = tmp_path / "ct2"
    TransformersConverter(str(folder)).convert(str(ct2_dir), quantization="int8")
    line = error_of(import_cli("--from", "ct2", ct2_dir, "--output", out, check=False))
    assert "quantized" in line and "model.bin" in line
    data = (ct2_dir / "model.bin").read_bytes()
    (ct2_dir / "model.bin").write_bytes(data[: len(data) // 2])
    line = error_of(import_cli("--from", "ct2", ct2_dir, "--output", out, check=False))
    assert "truncated" in line and "model.bin" in line
    assert not out.exists() and not list(tmp_path.glob(".out.pt.*"))


# --- ESPnet experiments -------------------------------------------------------------------

#: Added tokens of the experiment, in an order of its own (ours would be prompts first).
ESPNET_ADDED = ["em:sad", "<|SLURP|>", "em:hap", "<|ic|>", "<|er|>", "<|iemocap|>"]


def espnet_token_list(added):
    """A token list as ESPnet writes it for Whisper: Ġ as a space, lines right-stripped."""
    base = [t.replace("Ġ", " ").rstrip() for t in whisper_base_tokens()]
    n_stamps = 51865 - len(base) - len(added)
    return base + list(added) + timestamp_tokens()[:n_stamps]


@pytest.fixture(scope="module")
def espnet_experiment(tmp_path_factory, request):
    """config.yaml + model .pth of a model built by ESPnet's ASRTask over a tiny Whisper."""
    from espnet2.tasks.asr import ASRTask
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    root = tmp_path_factory.mktemp("espnet")
    # ESPnet's whisper components call whisper.load_model("tiny", download_root=...):
    # a local file whose sha256 matches the URL's is used as is, without a download.
    model = init_whisper_parameters(Whisper(ModelDimensions(**DIMS)), seed=3)
    weights = root / "whisper" / "tiny.pt"
    save_whisper_checkpoint(weights, model.dims, model.state_dict())
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    patch = pytest.MonkeyPatch()
    request.addfinalizer(patch.undo)
    patch.setitem(whisper._MODELS, "tiny", f"https://local.invalid/{sha}/tiny.pt")
    heads = np.ones((DIMS["n_text_layer"], DIMS["n_text_head"]), dtype=bool)
    patch.setitem(
        whisper._ALIGNMENT_HEADS,
        "tiny",
        base64.b85encode(gzip.compress(heads.tobytes())),
    )
    # ESPnet's stock encoder imports N_MELS, which openai-whisper dropped with large-v3's
    # 128 mels (ESPnet installs its own whisper fork that still has it).
    patch.setattr(whisper.audio, "N_MELS", 80, raising=False)

    token_file = root / "tokens.txt"
    token_file.write_text("\n".join(espnet_token_list(ESPNET_ADDED)) + "\n")
    whisper_conf = dict(whisper_model="tiny", download_dir=str(weights.parent))
    cmd = [
        "--token_list", str(token_file), "--token_type", "whisper_multilingual",
        "--input_size", "1", "--normalize", "none",
        "--encoder", "whisper", "--encoder_conf", json.dumps(whisper_conf),
        "--decoder", "whisper", "--decoder_conf", json.dumps(whisper_conf),
        "--model_conf", json.dumps(dict(ctc_weight=0.0)),
        "--output_dir", str(root / "exp"),
    ]  # fmt: skip
    args = ASRTask.get_parser().parse_args(cmd)
    args.frontend = None  # as `frontend: null` in a config file (the CLI has no "none")
    espnet_model = ASRTask.build_model(args).eval()
    with torch.no_grad():  # move every weight off the pretrained values
        for p in espnet_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    exp = root / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml_no_alias_safe_dump(vars(args), indent=4))
    torch.save(espnet_model.state_dict(), exp / "valid.acc.ave.pth")
    return espnet_model, exp


def test_espnet_import_keeps_its_token_order_and_logits(espnet_experiment, tmp_path):
    espnet_model, exp = espnet_experiment
    specifiers = tmp_path / "tasks.yaml"
    specifiers.write_text(
        yaml.safe_dump(
            dict(
                tasks=dict(
                    ic_slurp_released=dict(
                        prompt="<|en|> <|ic|> <|SLURP|>",
                        target="classification",
                        metric="accuracy",
                    ),
                    er_iemocap=dict(
                        prompt="<|en|> <|er|> <|iemocap|>",
                        target="classification",
                        metric="accuracy",
                        labels=["em:hap", "em:sad"],
                    ),
                )
            )
        )
    )
    out, tokens = tmp_path / "universlu.pt", tmp_path / "universlu_tokens.txt"
    import_cli(
        "--from", "espnet", exp / "config.yaml", "--model_file",
        exp / "valid.acc.ave.pth", "--output", out, "--token_list", tokens,
        "--task_specifiers", specifiers, "--tasks", "ic_slurp_released", "er_iemocap",
    )  # fmt: skip
    token_list = tokens.read_text().splitlines()
    assert token_list == build_token_list(ESPNET_ADDED)  # its order, our spelling
    tokenizer = WhisperTokenizer(tokens)
    assert tokenizer.added_tokens == ESPNET_ADDED

    prompt = "<|startoftranscript|> <|en|> <|ic|> <|SLURP|> <|notimestamps|> em:hap"
    ids = tokenizer.text2ids(prompt)
    espnet_ids = [espnet_token_list(ESPNET_ADDED).index(t) for t in prompt.split()]
    assert ids == espnet_ids
    torch.manual_seed(2)
    audio = 0.1 * torch.randn(1, 8000)
    ys = torch.tensor([ids])
    with torch.no_grad():
        enc, enc_lens = espnet_model.encode(audio, torch.tensor([8000]))
        expected, _ = espnet_model.decoder(enc, enc_lens, ys, torch.tensor([len(ids)]))
    got = our_logits(out, audio, ys)
    assert torch.equal(got, expected)


def test_espnet_import_names_missing_prompt_tokens(espnet_experiment, tmp_path):
    _, exp = espnet_experiment
    proc = import_cli(
        "--from", "espnet", exp / "config.yaml", "--model_file",
        exp / "valid.acc.ave.pth", "--output", tmp_path / "x.pt",
        "--tasks", "ic_slurp", "er_iemocap", check=False,
    )  # fmt: skip
    line = error_of(proc)
    assert "'<|slurp|>' (nearest: '<|SLURP|>')" in line
    assert "'em:neu'" in line and "config.yaml" in line
    assert not (tmp_path / "x.pt").exists()
