"""Which parameters of a model may be pruned (the *pruning scope*).

A parameter is classified by the type of the module that owns it and by its attribute
name:

=====================================  ===========  ===============================
owning module (subclasses included)    attribute    prunable when
=====================================  ===========  ===============================
``nn.Linear``, ``nn.Conv1d/2d/3d``     ``weight``   ``include_weight_matrices``
``nn.Embedding``                       ``weight``   ``include_token_embedding``
``nn.Linear``, ``nn.Conv*``            ``bias``     ``include_bias``
``nn.LayerNorm``                       ``weight``,  ``include_layernorm``
                                       ``bias``
anything else (e.g. a bare                          never
``nn.Parameter`` such as Whisper's
decoder ``positional_embedding``)
=====================================  ===========  ===============================

Names matching one of ``exclude`` (a substring of the name, or an ``fnmatch`` pattern)
are never prunable. The default scope (weight matrices plus the token embedding, which
Whisper ties to the output layer; biases, LayerNorm and positional embeddings dense)
is the one whose Param% arithmetic reproduces the core paper's tables
(docs/methods.md §1.6).

The prunable names are returned **sorted**; that order is the documented global order
used for deterministic tie-breaking (:mod:`espnet_pruning.pruning.select`) and for the
layout of mask files (:mod:`espnet_pruning.pruning.storage`).
"""

import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from torch import nn
from typeguard import typechecked

_WEIGHT_MATRIX_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class PruningScope:
    """The policy that decides which parameters are prunable.

    Args:
        include_weight_matrices: Prune ``weight`` of Linear and Conv modules.
        include_token_embedding: Prune ``weight`` of Embedding modules (Whisper's
            decoder token embedding, also the tied output layer).
        include_bias: Prune ``bias`` of Linear and Conv modules.
        include_layernorm: Prune ``weight`` and ``bias`` of LayerNorm modules.
        exclude: Substrings or ``fnmatch`` patterns of parameter names that are never
            pruned.
    """

    include_weight_matrices: bool = True
    include_token_embedding: bool = True
    include_bias: bool = False
    include_layernorm: bool = False
    exclude: Tuple[str, ...] = ("positional_embedding",)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "exclude":
                if isinstance(value, str) or not all(
                    isinstance(p, str) and p for p in value
                ):
                    raise ValueError(
                        f"PruningScope.exclude must be a sequence of non-empty "
                        f"strings, got {value!r}"
                    )
                # Lists from YAML/JSON become a tuple so the scope stays hashable.
                object.__setattr__(self, "exclude", tuple(value))
            elif not isinstance(value, bool):
                raise ValueError(
                    f"PruningScope.{field.name} must be a bool, got {value!r}"
                )

    @classmethod
    @typechecked
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "PruningScope":
        """Build a scope from a config mapping (e.g. a YAML section).

        Args:
            d: Field values; missing fields keep their defaults. ``None`` gives the
                default scope.

        Returns:
            The scope.

        Raises:
            ValueError: If ``d`` has a key that is not a field, or a value of the wrong
                type.
        """
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown pruning scope key(s) {unknown}; known keys: {sorted(known)}"
            )
        return cls(**d)

    def to_dict(self) -> dict:
        """The scope as a JSON/YAML-friendly dict (inverse of :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d

    def is_excluded(self, name: str) -> bool:
        """Whether ``name`` matches one of the ``exclude`` patterns."""
        return any(p in name or fnmatch.fnmatchcase(name, p) for p in self.exclude)

    def _admits(self, module: nn.Module, attr: str) -> bool:
        if isinstance(module, _WEIGHT_MATRIX_MODULES):
            if attr == "weight":
                return self.include_weight_matrices
            return attr == "bias" and self.include_bias
        if isinstance(module, nn.Embedding):
            return attr == "weight" and self.include_token_embedding
        if isinstance(module, nn.LayerNorm):
            return attr in ("weight", "bias") and self.include_layernorm
        return False


@typechecked
def prunable_parameter_names(model: nn.Module, scope: PruningScope) -> List[str]:
    """The sorted names of the parameters of ``model`` that ``scope`` allows to prune.

    A parameter shared under several names (tied weights) is listed once, under the
    name ``model.named_parameters()`` reports.

    Args:
        model: The model.
        scope: The pruning policy.

    Returns:
        Sorted parameter names (the global order of masks and tie-breaking).

    Raises:
        ValueError: If no parameter is prunable.

    Examples:
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
        >>> prunable_parameter_names(model, PruningScope())
        ['0.weight']
    """
    owners = dict(model.named_modules())
    names = []
    for name, _ in model.named_parameters():
        module_name, _, attr = name.rpartition(".")
        module = owners[module_name]
        if scope._admits(module, attr) and not scope.is_excluded(name):
            names.append(name)
    if not names:
        raise ValueError(
            f"no prunable parameter in {type(model).__name__} under {scope}"
        )
    return sorted(names)
