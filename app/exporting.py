"""Writing the gallery's images to disk (run in a worker thread). File names and PNG text
chunks are the CLI's (cmcore.export.image_stem / image_metadata); every path goes through
cmcore.export.unique_path: an existing file is never overwritten. Each takes an optional
`cancel` (app.workers.CancelFlag), checked between files and sampler steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .gallery_jobs import SampleRequest, SampleResult, run_trajectory


def _stem(result: SampleResult, request: SampleRequest) -> str:
    from cmcore.export import image_stem

    return image_stem(result.run_name, result.step, request.sampler, request.steps, request.seed)


def export_images(result: SampleResult, indices: list[int], folder: Path, cancel: Any = None) -> list[Path]:
    from cmcore.export import save_png, unique_path

    paths = []
    for i in indices:
        if cancel is not None:
            cancel.check()
        path = unique_path(Path(folder) / f"{_stem(result, result.request)}_{i:03d}.png")
        paths.append(save_png(path, result.images[i], result.metadata(i)))
    return paths


def export_grid(result: SampleResult, folder: Path, cancel: Any = None) -> list[Path]:
    from cmcore.export import make_grid, save_png, unique_path

    path = unique_path(Path(folder) / f"{_stem(result, result.request)}_grid.png")
    return [save_png(path, make_grid(result.images), result.metadata())]


def export_gif(result: SampleResult, folder: Path, duration_ms: int = 400, cancel: Any = None) -> list[Path]:
    """Animated GIF of the multistep refinement, one frame per sampling step (at least 4)."""
    from dataclasses import replace

    from cmcore.export import save_gif, unique_path

    request = replace(result.request, steps=max(result.request.steps, 4), sampler="multistep")
    frames = run_trajectory(request, cancel)
    path = unique_path(Path(folder) / f"{_stem(result, request)}_refinement.gif")
    return [save_gif(path, frames + [frames[-1]] * 2, duration_ms)]  # hold the final image


def export_model(source: str, folder: Path, cancel: Any = None) -> list[Path]:
    """The portable model folder (weights, config, ONNX, model card) of the gallery's run: `cmcore export`."""
    from cmcore.export import unique_path
    from cmcore.portable import export_model as write

    return [write(source, unique_path(Path(folder)))]
