"""Preview grids: samples of the evaluation EMA from fixed noise, at the step counts a user compares."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import OutOfMemoryError
from .rundir import PREVIEWS
from .sampling import sample, to_uint8


def preview_steps(default_sampler: str) -> tuple[tuple[int, str], ...]:
    """(steps, sampler) of each preview grid: 1 and 4 multistep steps; a flow teacher 1 and 16 ODE steps."""
    if default_sampler == "ode":
        return ((1, "ode_euler"), (16, "ode_euler"))
    return ((1, "multistep"), (4, "multistep"))


MAX_CLASS_ROWS = 16  # a preview of a class-conditional run shows its first classes, one row each


def class_rows(count: int, num_classes: int) -> tuple[torch.Tensor, int]:
    """(the label of each preview image, images per row) for one class per row: the first MAX_CLASS_ROWS
    classes, about `count` images in all and at least 2 per class."""
    rows = min(num_classes, MAX_CLASS_ROWS)
    per_row = max(2, round(count / rows))
    return torch.arange(rows).repeat_interleave(per_row), per_row


@torch.no_grad()
def preview_grids(ema, shape: tuple[int, int, int, int], default_sampler: str, seed: int,
                  device, num_classes: int = 0) -> dict[int, tuple[np.ndarray, str]]:
    """{steps: (uint8 grid H×W×C, sampler)}, one class per row for a class-conditional model (`num_classes`);
    OutOfMemoryError (one line) when the images do not fit."""
    from .export import make_grid

    labels, nrow = None, None
    if num_classes:
        labels, nrow = class_rows(shape[0], num_classes)
        shape = (len(labels), *shape[1:])
    grids = {}
    try:
        for steps, sampler in preview_steps(default_sampler):
            x = sample(ema, shape, steps, seed, sampler, device, labels=labels)
            grids[steps] = (make_grid(to_uint8(x), nrow), sampler)
    except torch.OutOfMemoryError:
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemoryError(f"out of memory drawing {shape[0]} preview images on {device}: lower "
                               "preview_count, the batch size or the model size") from None
    return grids


def write_previews(run_dir: Path, step: int, grids: dict[int, tuple[np.ndarray, str]]) -> None:
    """One PNG per grid under RUN/previews/, written atomically (SaveError when the disk refuses)."""
    from .export import save_png

    for steps, (grid, sampler) in grids.items():
        save_png(run_dir / PREVIEWS / f"step_{step:07d}_{steps}steps.png", grid,
                 {"step": str(step), "steps": str(steps), "sampler": sampler})
