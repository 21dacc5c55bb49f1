"""Tiny generated multi-task data sets and model configs for the tests.

Audio is synthetic (tones and noise, a fraction of a second), so a 2-layer, 32-wide
Whisper learns it in a few steps on CPU. Nothing is downloaded.
"""

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import soundfile as sf
import yaml

from espnet_pruning.specifiers import TaskRegistry

FS = 16000

TINY_DIMS = dict(
    n_mels=80,
    n_audio_ctx=1500,
    n_audio_state=32,
    n_audio_head=2,
    n_audio_layer=2,
    n_vocab=51865,
    n_text_ctx=64,
    n_text_state=32,
    n_text_head=2,
    n_text_layer=2,
)

#: (task, text) per class; the class decides the tone frequency of the audio.
TINY_TEXTS: Dict[str, List[str]] = {
    "er_iemocap": ["em:hap SEP hello", "em:sad SEP hello"],
    "ic_fsc": ["in:activate_lights_none SEP lights on", "in:deactivate_lights_none"],
    "asr_librispeech": ["TURN ON", "GO HOME"],
}


def write_kaldi(path: Path, rows: Dict[str, str]) -> None:
    """Write a C-sorted Kaldi map file."""
    path.write_text("".join(f"{k} {rows[k]}\n" for k in sorted(rows)), encoding="utf-8")


def make_data_dir(
    root: Path,
    name: str,
    n_per_class: int = 2,
    tasks: Sequence[str] = tuple(TINY_TEXTS),
    seed: int = 0,
) -> Path:
    """A Kaldi data dir with ``n_per_class`` utterances per (task, class)."""
    registry = TaskRegistry.load()
    rng = np.random.default_rng(seed)
    wav_dir = root / "wav" / name
    wav_dir.mkdir(parents=True, exist_ok=True)
    data = root / name
    data.mkdir(parents=True, exist_ok=True)
    maps: Dict[str, Dict[str, str]] = {
        k: {}
        for k in (
            "wav.scp",
            "text",
            "prompt",
            "utt2spk",
            "utt2category",
            "speech_shape",
        )
    }
    for t_index, task in enumerate(tasks):
        for c_index, text in enumerate(TINY_TEXTS[task]):
            for n in range(n_per_class):
                spk = f"spk{n % 2}"
                uid = f"{spk}-{task}-{c_index}-{n:03d}"
                freq = 300.0 + 400.0 * c_index + 100.0 * t_index
                dur = 0.3 + 0.05 * n
                t = np.arange(int(dur * FS)) / FS
                wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(
                    t.size
                )
                path = wav_dir / f"{uid}.wav"
                sf.write(path, wav.astype(np.float32), FS, subtype="PCM_16")
                maps["wav.scp"][uid] = str(path)
                maps["text"][uid] = text
                maps["prompt"][uid] = " ".join(registry[task].prompt)
                maps["utt2spk"][uid] = spk
                maps["utt2category"][uid] = task
                maps["speech_shape"][uid] = str(t.size)
    for fname, rows in maps.items():
        write_kaldi(data / fname, rows)
    spk2utt: Dict[str, List[str]] = {}
    for uid in sorted(maps["utt2spk"]):
        spk2utt.setdefault(maps["utt2spk"][uid], []).append(uid)
    write_kaldi(data / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    return data


def write_train_config(path: Path, **overrides) -> Path:
    """A training config for the tiny model (CPU, a few epochs)."""
    conf = dict(
        encoder="whisper",
        encoder_conf=dict(whisper_dims=TINY_DIMS),
        decoder="whisper",
        decoder_conf=dict(whisper_dims=TINY_DIMS),
        model="uslu",
        model_conf=dict(lsm_weight=0.0),
        optim="adam",
        optim_conf=dict(lr=0.003),
        batch_type="folded",
        batch_size=4,
        fold_length=[800000],
        max_epoch=3,
        num_workers=0,
        seed=0,
        use_tensorboard=False,
        use_matplotlib=False,
        best_model_criterion=[["valid", "loss", "min"]],
        keep_nbest_models=1,
        num_att_plot=0,
    )
    conf.update(overrides)
    path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    return path


def train_args(
    data_root: Path,
    out: Path,
    config: Path,
    token_list: Path,
    train="train",
    valid="valid",
) -> List[str]:
    """Command-line arguments of ``uslu_train`` for a tiny run."""
    args = ["--config", str(config), "--output_dir", str(out), "--ngpu", "0"]
    args += ["--token_list", str(token_list)]
    for mode, name in (("train", train), ("valid", valid)):
        d = data_root / name
        args += [f"--{mode}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound"]
        args += [f"--{mode}_data_path_and_name_and_type", f"{d}/text,text,text"]
        args += [f"--{mode}_data_path_and_name_and_type", f"{d}/prompt,prompt,text"]
        args += [f"--{mode}_shape_file", f"{d}/speech_shape"]
    return args


def epoch_losses(log: str, phase: str = "train") -> List[float]:
    """Per-epoch loss of ``phase`` from an ESPnet training log."""
    import re

    pattern = re.compile(rf"\[{phase}\].*?\bloss=([0-9.e+-]+)")
    return [
        float(m.group(1))
        for line in log.splitlines()
        if "epoch results" in line
        for m in [pattern.search(line)]
        if m
    ]


def masked_model_args(exp: Path, masks: Path) -> List[str]:
    """``--train_config/--model_file/--mask_dir`` of a tiny experiment and mask set."""
    return [
        "--train_config",
        str(exp / "config.yaml"),
        "--model_file",
        str(exp / "valid.loss.best.pth"),
        "--mask_dir",
        str(masks),
    ]


def driver_train_args(data_root: Path, config: Path) -> List[str]:
    """``uslu_train`` options of a tiny run without ``--output_dir`` (drivers set it)."""
    args = train_args(data_root, Path("unused"), config, data_root / "tokens.txt")
    i = args.index("--output_dir")
    return args[:i] + args[i + 2 :]


def task_run_config(path: Path, max_epoch: int = 2, **overrides) -> Path:
    """The config of a mask method's runs from θ0: one task's batches at a time (the
    task iterator, a block = the task's data), Adam at 0.01, ``max_epoch`` epochs."""
    return write_train_config(
        path,
        max_epoch=max_epoch,
        iterator_type="task",
        task_block_size=0,
        optim="adam",
        optim_conf=dict(lr=0.01),
        **overrides,
    )
