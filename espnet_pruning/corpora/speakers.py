"""Speakers of the synthetic corpus: espeak-ng voices, noise sources and emotional prosody.

Speakers live in ``templates/speakers.yaml`` and belong to one pool: ``train`` (train and
valid sets), ``test`` (the ``test_<task>`` sets, never seen in training), ``cl_asr`` and
``cl_ic`` (the continual-learning sets). A speaker's base voice is an espeak-ng voice plus a
variant (``en-gb-scotland+f2``) and base speed, pitch and amplitude; every utterance jitters
them slightly, and ``er_iemocap`` shifts them per emotion (``templates/emotions.yaml``).
"""

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from typeguard import typechecked

from espnet_pruning.corpora.templates import TEMPLATE_DIR, TemplateError, _load_yaml
from espnet_pruning.corpora.tts import Prosody

POOLS = ("train", "test", "cl_asr", "cl_ic")
_COLOURS = ("white", "pink", "brown")


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A TTS speaker: espeak voice + variant and base prosody."""

    spk_id: str
    pool: str
    voice: str
    variant: str
    speed: int
    pitch: int
    amplitude: int

    @property
    def espeak_voice(self) -> str:
        """The ``-v`` argument, e.g. ``en-us+f3``."""
        return f"{self.voice}+{self.variant}"

    def to_json(self) -> dict:
        """JSON description for ``speakers.json``."""
        return dict(
            dataclasses.asdict(self), kind="tts", espeak_voice=self.espeak_voice
        )


@dataclasses.dataclass(frozen=True)
class NoiseSource:
    """A background-noise "speaker" for ``command:_silence_`` clips."""

    spk_id: str
    pool: str
    colour: str
    level_db: Tuple[float, float]
    hum_hz: Optional[float] = None

    def to_json(self) -> dict:
        """JSON description for ``speakers.json``."""
        return dict(
            dataclasses.asdict(self), kind="noise", level_db=list(self.level_db)
        )


@dataclasses.dataclass(frozen=True)
class Emotion:
    """Prosody transform of one emotion, relative to the speaker's base prosody."""

    name: str
    speed_factor: float
    pitch_shift: int
    amplitude_factor: float
    range: Optional[str] = None


@typechecked
def load_speakers(
    directory: Path = TEMPLATE_DIR,
) -> Tuple[Dict[str, Speaker], Dict[str, NoiseSource]]:
    """Load and check ``speakers.yaml``.

    Returns:
        ``(speakers, noise_sources)``, both keyed by speaker id.
    """
    path = Path(directory) / "speakers.yaml"
    data = _load_yaml(path)
    speakers: Dict[str, Speaker] = {}
    noises: Dict[str, NoiseSource] = {}
    for key, cls, target in (
        ("speakers", Speaker, speakers),
        ("noise_sources", NoiseSource, noises),
    ):
        for spk_id, spec in (data.get(key) or {}).items():
            try:
                if cls is Speaker:
                    obj = Speaker(spk_id=str(spk_id), **spec)
                    ok = 80 <= obj.speed <= 450 and 0 <= obj.pitch <= 99
                    ok = ok and 0 < obj.amplitude <= 200
                else:
                    spec = dict(spec)
                    spec["level_db"] = tuple(float(x) for x in spec["level_db"])
                    obj = NoiseSource(spk_id=str(spk_id), **spec)
                    ok = obj.colour in _COLOURS and len(obj.level_db) == 2
            except (TypeError, KeyError, ValueError) as e:
                raise TemplateError(f"{path}: {key}.{spk_id}: {e}") from e
            if not ok or obj.pool not in POOLS:
                raise TemplateError(f"{path}: {key}.{spk_id}: invalid entry {spec}")
            if spk_id in speakers or spk_id in noises:
                raise TemplateError(f"{path}: duplicate speaker id {spk_id}")
            target[str(spk_id)] = obj
    ids = list(speakers) + list(noises)
    if len({len(i) for i in ids}) > 1:
        # Equal-length ids keep "<spk>-..." utterance ids sorted consistently with speakers.
        raise TemplateError(f"{path}: speaker ids must all have the same length: {ids}")
    return speakers, noises


@typechecked
def load_emotions(directory: Path = TEMPLATE_DIR) -> Dict[str, Emotion]:
    """Load the emotion prosody transforms of ``emotions.yaml``."""
    path = Path(directory) / "emotions.yaml"
    try:
        return {
            name: Emotion(name=name, **spec)
            for name, spec in _load_yaml(path)["emotions"].items()
        }
    except (TypeError, KeyError) as e:
        raise TemplateError(f"{path}: emotions: {e}") from e


@typechecked
def pool(speakers: Dict, name: str) -> List:
    """The speakers (or noise sources) of one pool, sorted by id."""
    return [speakers[k] for k in sorted(speakers) if speakers[k].pool == name]


@typechecked
def utterance_prosody(
    speaker: Speaker,
    rng: np.random.Generator,
    emotion: Optional[Emotion] = None,
    jitter: bool = True,
) -> Prosody:
    """The espeak prosody of one utterance: base voice, emotion transform, small jitter.

    Args:
        speaker: The speaker.
        rng: Random generator for the jitter (speed +-6 %, pitch +-4, amplitude +-8 %).
        emotion: Emotion transform (``er_iemocap``), or ``None``.
        jitter: Whether to apply the per-utterance jitter.
    """
    speed = float(speaker.speed)
    pitch = float(speaker.pitch)
    amplitude = float(speaker.amplitude)
    prosody_range = None
    if emotion is not None:
        speed *= emotion.speed_factor
        pitch += emotion.pitch_shift
        amplitude *= emotion.amplitude_factor
        prosody_range = emotion.range
    if jitter:
        speed *= rng.uniform(0.94, 1.06)
        pitch += rng.uniform(-4.0, 4.0)
        amplitude *= rng.uniform(0.92, 1.08)
    return Prosody(
        voice=speaker.espeak_voice,
        speed=int(np.clip(round(speed), 80, 450)),
        pitch=int(np.clip(round(pitch), 0, 99)),
        amplitude=int(np.clip(round(amplitude), 1, 200)),
        range=prosody_range,
    )
