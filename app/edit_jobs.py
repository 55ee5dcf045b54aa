"""The Edit window's jobs (run in worker threads; no Qt here): zero-shot editing through cmcore.editing
on the gallery's loaded model, and writing the results to disk.

Every input image is a uint8 H×W×C array at the model's resolution (`load_input` fits a file of any
size the way the engine fits training data), so the window can show exactly what the model edits.
A job takes an optional `cancel` (app.workers.CancelFlag), checked before every network evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .gallery_jobs import GENERATORS

if TYPE_CHECKING:  # numpy loads after the window is shown
    import numpy as np

MODES = ("inpaint", "interpolate", "img2img", "colorize", "upscale")


@dataclass(frozen=True)
class EditRequest:
    checkpoint: str  # the gallery's checkpoint file (the key of its loaded model in GENERATORS)
    device: str
    mode: str
    steps: int
    seed: int
    num: int  # results (interpolate: images in the row)
    image: Any = None  # uint8 H×W×C at the model's resolution (not interpolate)
    mask: Any = None  # bool H×W, True where inpainting fills
    seeds: tuple[int, int] = (0, 1)  # interpolate: the row's two ends
    strength: float = 0.5  # img2img
    factor: int = 2  # upscale: the input is area-averaged by this factor, then upscaled back
    input_name: str = ""  # the input's file name or "gallery image #3", for the PNG text chunks
    label: int | None = None  # a class-conditional model: the gallery's class (None: result i gets class i)


@dataclass
class EditResult:
    request: EditRequest
    images: np.ndarray  # uint8 [N, H, W, C]
    run_name: str
    step: int
    method: str
    checkpoint: str
    low: np.ndarray | None = None  # upscale: the low-resolution picture the results enlarge
    extra: dict = field(default_factory=dict)

    def metadata(self, index: int | None = None) -> dict[str, str]:
        """The gallery's PNG text chunks (the edit's multistep sampler, steps, seed) plus the edit's own."""
        from cmcore.export import image_metadata

        r = self.request
        data = image_metadata(run=self.run_name, checkpoint=self.checkpoint, step=self.step, method=self.method,
                              sampler="multistep", steps=r.steps, seed=r.seed, count=r.num, index=index)
        data["edit"] = r.mode
        if r.mode == "interpolate":
            data["seeds"] = f"{r.seeds[0]},{r.seeds[1]}"
        if r.mode == "img2img":
            data["strength"] = f"{r.strength:g}"
        if r.mode == "upscale":
            data["factor"] = str(r.factor)
        if r.input_name:
            data["input"] = r.input_name
        return data

    def stem(self) -> str:
        from cmcore.export import image_stem

        return image_stem(self.run_name, self.step, self.request.mode, self.request.steps, self.request.seed)


class _Checked:
    """The model, with the cancel flag checked before each evaluation: cmcore.editing takes no callback."""

    def __init__(self, model, cancel: Any) -> None:
        self.model, self.cancel = model, cancel

    def __call__(self, *args, **kwargs):
        if self.cancel is not None:
            self.cancel.check()
        return self.model(*args, **kwargs)


def load_input(path: str | Path, resolution: int, channels: int) -> np.ndarray:
    """A picture file of any size fitted to the model (shorter side, centre crop) as uint8 H×W×C."""
    from cmcore.editing import read_image
    from cmcore.sampling import to_uint8

    return to_uint8(read_image(path, resolution, channels))[0]


def _tensor(image: np.ndarray, device):
    import numpy as np
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / 127.5 - 1.0)
    x = x[..., None] if x.dim() == 2 else x
    return x.permute(2, 0, 1)[None].to(device)


def upscale_factors(resolution: int) -> list[int]:
    """The factors an upscale can use at this resolution: the low picture must stay at least 4 px."""
    return [f for f in (2, 4, 8) if resolution % f == 0 and resolution // f >= 4]


def run_edit(request: EditRequest, cancel: Any = None) -> EditResult:
    import torch
    import torch.nn.functional as F

    from cmcore import editing
    from cmcore.errors import ConfigError
    from cmcore.rundir import run_name
    from cmcore.sampling import ImageNoise, to_uint8

    r = request
    if r.mode not in MODES:
        raise ConfigError(f"edit mode must be one of {', '.join(MODES)}, got {r.mode!r}")
    generator, lock = GENERATORS.get(r.checkpoint, r.device)
    res, ch, device = generator.resolution, generator.channels, generator.device
    low = None
    with lock:
        if cancel is not None:
            cancel.check()  # stale while it waited for the lock
        model = _Checked(editing.conditioned(generator, r.num, r.label), cancel)
        noise = ImageNoise.for_images(r.seed, r.num)
        if r.mode == "interpolate":
            out = editing.interpolate(model, (r.num, ch, res, res), r.seeds[0], r.seeds[1], r.num, r.steps, device)
        else:
            if r.image is None:
                raise ConfigError(f"{r.mode} needs an input picture: open an image or use a gallery sample")
            picture = _tensor(r.image, device)
            if picture.shape[1:] != (ch, res, res):
                raise ConfigError(f"the input picture is {picture.shape[-1]} px with {picture.shape[1]} channel(s); "
                                  f"this model makes {res} px with {ch}")
            batch = picture.expand(r.num, -1, -1, -1)
            if r.mode == "inpaint":
                if r.mask is None or not r.mask.any():
                    raise ConfigError("paint the part to fill first (white on the mask)")
                holes = torch.from_numpy(r.mask.astype("float32"))[None, None].to(device)
                out = editing.inpaint(model, batch, holes, r.steps, noise)
            elif r.mode == "img2img":
                out = editing.img2img(model, batch, float(r.strength), r.steps, noise)
            elif r.mode == "colorize":
                if ch != 3:
                    raise ConfigError("colourising needs a model trained on colour images; this one is greyscale")
                gray = torch.einsum("c,nchw->nhw", torch.tensor(editing.LUMA, device=device), batch)[:, None]
                out = editing.colorize(model, gray, r.steps, noise)
            else:  # upscale
                if r.factor not in upscale_factors(res):
                    raise ConfigError(f"a {res} px model cannot upscale by {r.factor}: the small picture would be "
                                      f"under 4 px or not a whole size")
                small = F.avg_pool2d(batch, r.factor)
                low = to_uint8(small[:1])[0]
                out = editing.upscale(model, small, r.factor, r.steps, noise)
    return EditResult(r, to_uint8(out), run_name(generator.source), int(generator.step), str(generator.method),
                      str(generator.source), low)


def gray_of(image: np.ndarray) -> np.ndarray:
    """The picture as the colouriser keeps it: its luma, repeated in three channels (uint8 H×W×3)."""
    import numpy as np

    from cmcore.editing import LUMA

    luma = np.asarray(image, dtype=np.float32) @ np.asarray(LUMA, dtype=np.float32)
    return np.repeat(np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


# --- export -----------------------------------------------------------------------------------------------
def export_edit(result: EditResult, what: str, folder: Path, cancel: Any = None) -> list[Path]:
    """what: images (one PNG each) | grid (one PNG, a row) | gif (interpolate: the row there and back).
    Names start like the gallery's; settings go into the PNG text chunks; nothing is overwritten."""
    from cmcore.export import make_grid, save_gif, save_png, unique_path

    folder = Path(folder)
    if what == "images":
        paths = []
        for i, image in enumerate(result.images):
            if cancel is not None:
                cancel.check()
            paths.append(save_png(unique_path(folder / f"{result.stem()}_{i:03d}.png"), image, result.metadata(i)))
        return paths
    if what == "grid":
        grid = make_grid(result.images, nrow=len(result.images))
        return [save_png(unique_path(folder / f"{result.stem()}_row.png"), grid, result.metadata())]
    if what == "gif":
        frames = list(result.images)
        return [save_gif(unique_path(folder / f"{result.stem()}.gif"), frames + frames[-2:0:-1], duration_ms=150)]
    raise ValueError(what)
