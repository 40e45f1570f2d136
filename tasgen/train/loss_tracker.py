"""Running sums of the loss terms on the device, read (synced) only at log points."""

from __future__ import annotations

import torch

from .dist import all_reduce_min, all_reduce_sum, world_size
from .errors import TrainError

_NEVER = 2**62  # "no bad step", larger than any step, for the all-reduce MIN


class LossTracker:
    """Sums the total loss and each term per log interval and per epoch, without syncing.

    It also records, still on the device, the first update whose loss was not
    finite and which terms were, so that a NaN is reported at the exact step and
    term even though it is only looked at every ``log_interval`` updates.

    Args:
        terms: names of the objective's terms, in order.
        device: where the sums live.
    """

    def __init__(self, terms: list[str], device: torch.device) -> None:
        self.names = ["loss", *terms]
        size = len(self.names)
        self._interval = torch.zeros(size, device=device, dtype=torch.float64)
        self._epoch = torch.zeros(size, device=device, dtype=torch.float64)
        self._bad_step = torch.full((), -1, device=device, dtype=torch.long)
        self._bad_terms = torch.zeros(size, device=device, dtype=torch.bool)
        self._interval_count = 0
        self._epoch_count = 0

    def add(self, total: torch.Tensor, terms: dict[str, torch.Tensor], step: int) -> None:
        """Add one micro-batch's losses; ``step`` is the update they belong to."""
        values = torch.stack([total.detach().float()] + [terms[n].detach().float() for n in self.names[1:]])
        self._interval += values
        self._epoch += values
        bad = ~torch.isfinite(values)
        first = (self._bad_step < 0) & bad.any()
        self._bad_step = torch.where(first, torch.full_like(self._bad_step, step), self._bad_step)
        self._bad_terms = torch.where(first, bad, self._bad_terms)
        self._interval_count += 1
        self._epoch_count += 1

    def check(self, hint: str = "") -> None:
        """Raise a `TrainError` naming the step and terms if any loss so far was NaN/Inf (syncs).

        Under DDP the first bad step is agreed over all processes (one all-reduce), so
        a NaN on one rank stops every rank at the same point instead of leaving the
        others waiting in the next collective.
        """
        mine = torch.where(self._bad_step < 0, torch.full_like(self._bad_step, _NEVER), self._bad_step)
        step = int(all_reduce_min(mine.clone()).item())
        if step == _NEVER:
            return
        terms = ["loss"]  # what another process saw is not known here
        if int(self._bad_step.item()) == step:
            flags = self._bad_terms.tolist()
            terms = [n for n, f in zip(self.names[1:], flags[1:], strict=True) if f] or terms
        raise TrainError(
            f"the loss is not finite at step {step} (term {', '.join(terms)}); training stopped. "
            "Lower train.optimizer.lr, set train.grad_clip, or check the data." + (f" {hint}" if hint else "")
        )

    def interval_means(self) -> dict[str, float]:
        """Mean of each term since the last call, over all processes (syncs)."""
        means = _global_means(self._interval, self._interval_count)
        self._interval.zero_()
        self._interval_count = 0
        return dict(zip(self.names, means, strict=True))

    def epoch_means(self) -> dict[str, float]:
        """Mean of each term over the epoch so far, over all processes (syncs); resets the epoch sums."""
        means = _global_means(self._epoch, self._epoch_count)
        self._epoch.zero_()
        self._epoch_count = 0
        return dict(zip(self.names, means, strict=True))


def _global_means(sums: torch.Tensor, count: int) -> list[float]:
    # Every rank adds the same number of micro-batches, so the mean of the ranks'
    # means is the mean over the global batch.
    return (all_reduce_sum(sums / max(count, 1)) / world_size()).tolist()
