"""Run any model part by part, as its stage table describes it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tasgen.arch.table import StageTable, is_method, resolve
from tasgen.emit.feature import knowledge, one_pass_classifier, sample_final_map

State = torch.Tensor | tuple  # a part's output: the main tensor, or (main, *carried values)


def main(state: State) -> torch.Tensor:
    """The main tensor of a part's output (the stage output its table describes)."""
    return state[0] if isinstance(state, tuple) else state


class StagedModel:
    """A view of a model as stem -> stages -> final -> head.

    Holds the model by reference (it is not an nn.Module, so nothing is registered
    twice): every call runs the model's own submodules. A graph-read table
    (``table.reader == "graph"``) is run as the pieces of the model's traced
    ``forward_features``; there a part whose cut carries more than the main
    tensor returns ``(main, *carry)`` and the next part takes all of them.

    Args:
        model: a timm model or a tasgen Backbone.
        table: its stage table (must be ``staged``).
        pool: the feature `head` returns: ``avg`` (the final feature map, average
            pooled over positions or grid tokens) or ``head`` (the classifier's input).
    """

    def __init__(self, model: nn.Module, table: StageTable, pool: str = "avg") -> None:
        if not table.staged:
            raise ValueError(table.staged_error or f"{table.model} cannot be run stage by stage")
        self.model = model
        self.table = table
        self.pool = pool
        self._classifier = one_pass_classifier(model, sample_final_map(model, table)) if pool == "head" else None
        if table.reader == "graph":
            from tasgen.arch.introspect import graph_parts

            stem, *stages, final = graph_parts(model, table)
            self._stem, self._stages, self._final = [stem], [[s] for s in stages], [final]
            self._stem_modules = [model.get_submodule(p) for p in table.stem.modules if not is_method(p)]
            self._stage_modules = [[model.get_submodule(p) for p in s.modules] for s in table.stages]
        else:
            self._stem = [resolve(model, p) for p in table.stem.modules]
            self._stages = [[resolve(model, p) for p in s.modules] for s in table.stages]
            self._final = [resolve(model, p) for p in table.head.final_modules]
            self._stem_modules = [m for m in self._stem if isinstance(m, nn.Module)]
            self._stage_modules = [[m for m in s if isinstance(m, nn.Module)] for s in self._stages]

    @property
    def num_stages(self) -> int:
        return len(self._stages)

    @staticmethod
    def _run(fns: list[Callable[..., State]], x: State) -> State:
        for fn in fns:
            x = fn(*x) if isinstance(x, tuple) else fn(x)
        return x

    def stem(self, x: torch.Tensor) -> State:
        return self._run(self._stem, x)

    def stage(self, index: int, x: State, recompute: bool = False) -> State:
        """Run stage `index` (1-based).

        With ``recompute``, each of the stage's parts (a block, or the stage's one piece
        when the table is graph-read) keeps only its input for backward and runs again
        there (activation checkpointing, part by part, so backward holds one part's
        activations at a time). Only for parts whose results do not change when run
        twice: no batch-norm statistics to update, no dropout (a frozen model in eval mode).
        """
        if not recompute:
            return self._run(self._stages[index - 1], x)
        for fn in self._stages[index - 1]:
            x = checkpoint(fn, *(x if isinstance(x, tuple) else (x,)), use_reentrant=False)
        return x

    def carries(self, index: int) -> bool:
        """Whether stage `index` (1-based) reads more than the previous part's main tensor."""
        return bool(self.table.stage_input(index).extras)

    def stage_modules(self, index: int) -> list[nn.Module]:
        return list(self._stage_modules[index - 1])

    def stem_modules(self) -> list[nn.Module]:
        return list(self._stem_modules)

    def head(self, x: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Final part and head, one pass: returns (logits, pooled feature)."""
        return knowledge(self.model, self.table.head, self._run(self._final, x), self.pool, self._classifier)

    def forward_to(self, x: torch.Tensor, depth: int) -> State:
        """Stem and stages 1..depth (0: the stem alone)."""
        x = self.stem(x)
        for i in range(1, depth + 1):
            x = self.stage(i, x)
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.forward_to(x, self.num_stages))
