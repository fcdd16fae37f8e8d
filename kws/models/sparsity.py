"""The three-stage sparsity schedule of FastGRNN training (as in EdgeML):

1. dense     – train all weights;
2. sparsify  – iterative hard thresholding: after every `every`-th optimizer step keep only the
               top-|w| fraction of each sparsified matrix (the support may change);
3. retrain   – fix the support found last (the masks of the last IHT step, or those restored
               from a checkpoint), re-zero pruned entries after every step.

Usage in a training loop (progress = fraction of all training done, in [0, 1]):

    schedule = IHTSchedule({"W": 0.2, "U": 0.2})
    ...
    optimizer.step()
    schedule.after_step(model, progress)

`schedule.active` is False when nothing is sparsified (all keep fractions 1), so dense training
costs nothing extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kws.models.base import KwsModel

STAGES = ("dense", "sparsify", "retrain")


def sparsity_stage(progress: float, dense_fraction: float = 1 / 3, sparsify_fraction: float = 1 / 3) -> str:
    """Which stage training is in, given the fraction of training done (epochs done / total)."""
    if dense_fraction < 0 or sparsify_fraction < 0 or dense_fraction + sparsify_fraction > 1.0:
        raise ValueError("stage fractions must be >= 0 and sum to at most 1")
    if progress < dense_fraction:
        return "dense"
    if progress < dense_fraction + sparsify_fraction:
        return "sparsify"
    return "retrain"


class IHTSchedule:
    def __init__(self, sparsity: dict[str, float], dense_fraction: float = 1 / 3,
                 sparsify_fraction: float = 1 / 3, every: int = 1) -> None:
        self.sparsity = {k: float(v) for k, v in sparsity.items()}
        self.dense_fraction = dense_fraction
        self.sparsify_fraction = sparsify_fraction
        self.every = max(1, int(every))
        self._steps = 0

    @property
    def active(self) -> bool:
        return any(v < 1.0 for v in self.sparsity.values())

    def stage(self, progress: float) -> str:
        return sparsity_stage(progress, self.dense_fraction, self.sparsify_fraction)

    def after_step(self, model: "KwsModel", progress: float) -> str:
        """Apply the stage's operation after an optimizer step; returns the stage name."""
        stage = self.stage(progress)
        if not self.active:
            return stage
        if stage == "sparsify":
            self._steps += 1
            if self._steps % self.every == 0:
                model.hard_threshold(self.sparsity)
        elif stage == "retrain":
            if model.sparsity_state():
                # The support is the last one IHT chose (or the masks restored from a checkpoint on
                # resume): keep it fixed. Re-thresholding here would pick a new support from the
                # entries the optimizer just moved.
                model.apply_masks()
            else:
                model.hard_threshold(self.sparsity)
        return stage

    def finalize(self, model: "KwsModel") -> None:
        """Make sure the final weights meet the target sparsity (e.g. training stopped early)."""
        if self.active:
            model.hard_threshold(self.sparsity)
