"""Parsing entity outputs of the NER task.

Format (the paper's): entity chunks, then the transcript, separated by ``<SEP>`` tokens::

    <entity:date> <FILL> tomorrow <SEP> <entity:time> <FILL> five am <SEP> wake me up ...

The text is split at ``<SEP>`` tokens; the last chunk is the transcript, every other chunk
is an entity iff it reads ``<entity:TYPE> <FILL> w1 [w2 ...]`` (at least one filler word,
no further ``<FILL>``, ``<SEP>`` or entity tag among the filler words). Other chunks are
malformed. A text without ``<SEP>`` has no entities and is all transcript.
"""

import dataclasses
import re
from typing import List, Optional, Tuple

from typeguard import typechecked

SEP = "<SEP>"
FILL = "<FILL>"
#: An entity tag ``<entity:TYPE>``; group 1 is the type.
ENTITY_TAG = re.compile(r"^<entity:([^\s<>]+)>$")


@dataclasses.dataclass(frozen=True)
class Entity:
    """One entity: its type (``date``) and filler words joined by spaces (``tomorrow``)."""

    type: str
    filler: str


@dataclasses.dataclass(frozen=True)
class ParsedEntities:
    """The entities of one text.

    Attributes:
        entities: Well-formed entity chunks in text order.
        transcript: The last chunk.
        malformed: Chunks (before the transcript) that are not entities, as text.
    """

    entities: Tuple[Entity, ...]
    transcript: str
    malformed: Tuple[str, ...]


def _entity_of(chunk: List[str]) -> Optional[Entity]:
    if len(chunk) < 3 or chunk[1] != FILL:
        return None
    tag = ENTITY_TAG.match(chunk[0])
    filler = chunk[2:]
    if tag is None or any(w == FILL or ENTITY_TAG.match(w) for w in filler):
        return None
    return Entity(type=tag.group(1), filler=" ".join(filler))


@typechecked
def parse_entities(text: str) -> ParsedEntities:
    """Split an NER text into entities and transcript.

    Args:
        text: A reference or hypothesis (prompt tokens already stripped).

    Returns:
        The parsed text; malformed chunks are listed, not raised.
    """
    chunks: List[List[str]] = [[]]
    for word in text.split():
        if word == SEP:
            chunks.append([])
        else:
            chunks[-1].append(word)
    entities: List[Entity] = []
    malformed: List[str] = []
    for chunk in chunks[:-1]:
        entity = _entity_of(chunk)
        if entity is None:
            malformed.append(" ".join(chunk))
        else:
            entities.append(entity)
    return ParsedEntities(
        entities=tuple(entities),
        transcript=" ".join(chunks[-1]),
        malformed=tuple(malformed),
    )
