"""Zero-shot editing with a trained consistency model alone (Song et al. 2023, Algorithm 4).

The multistep sampler with the known part of the image re-imposed after every denoising step:

    x ← f(x1, τ_1);  x ← known(y) + unknown(x)
    for τ in τ_2 … τ_K:   x ← f((1 − τ)·x + τ·z, τ);  x ← known(y) + unknown(x)

`known` is a projection that keeps what the reference y fixes: the pixels outside a mask
(inpainting), the luma of each pixel (colourisation), the mean of each s×s patch
(super-resolution). Interpolation walks the starting noise (and every reinjected draw) along a
great circle between two seeds; image-to-image noises a picture to time `strength` and denoises it.
Every function takes and returns images in [-1, 1], NCHW, at the model's resolution.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .sampling import ImageNoise, default_times

Projection = Callable[[torch.Tensor], torch.Tensor]  # x -> x with the known part taken from the reference


@torch.inference_mode()
def edit(model, reference: torch.Tensor, keep_known: Projection, steps: int, noise: ImageNoise,
         times: Sequence[float] | None = None, x1: torch.Tensor | None = None) -> torch.Tensor:
    """Algorithm 4: multistep sampling from x1 (drawn from `noise` if not given) with `keep_known`
    applied after each step."""
    times = list(times) if times is not None else default_times(steps)
    x = noise.draw(reference.expand(len(noise.streams), -1, -1, -1)) if x1 is None else x1
    x = keep_known(model(x, times[0]))
    for tau in times[1:]:
        x = keep_known(model((1 - tau) * x + tau * noise.draw(x), tau))
    return x


# --- inpainting ----------------------------------------------------------------------------------------
def inpaint(model, image: torch.Tensor, mask: torch.Tensor, steps: int, noise: ImageNoise) -> torch.Tensor:
    """Fill where `mask` is 1 ([N or 1, 1, H, W]); every other pixel is `image`'s exactly."""
    mask = (mask > 0.5).to(image.dtype)
    return edit(model, image, lambda x: image * (1 - mask) + x * mask, steps, noise)


# --- colourisation -------------------------------------------------------------------------------------
LUMA = (0.299, 0.587, 0.114)


def luma_basis(device=None) -> torch.Tensor:
    """An orthonormal 3×3 basis of colour space whose first row points along the luma weights."""
    first = torch.tensor(LUMA, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.stack([first, torch.tensor([1.0, 0, 0], dtype=torch.float64),
                                        torch.tensor([0, 1.0, 0], dtype=torch.float64)]).T)
    q = q.T * torch.sign(q.T[0] @ first)  # the first row along +luma, not -luma
    return q.to(torch.float32).to(device)


def colorize(model, gray: torch.Tensor, steps: int, noise: ImageNoise) -> torch.Tensor:
    """RGB images whose luma is `gray`'s ([N, 1, H, W] or [N, 3, H, W] of equal channels)."""
    q = luma_basis(gray.device)
    reference = gray.expand(-1, 3, -1, -1) if gray.shape[1] == 1 else gray
    known = torch.einsum("ij,njhw->nihw", q, reference)[:, :1]  # the luma coordinate of the reference

    def keep_luma(x: torch.Tensor) -> torch.Tensor:
        coords = torch.einsum("ij,njhw->nihw", q, x)
        coords = torch.cat([known.expand(len(x), -1, -1, -1), coords[:, 1:]], dim=1)
        return torch.einsum("ji,njhw->nihw", q, coords)

    return edit(model, reference, keep_luma, steps, noise)


# --- super-resolution ----------------------------------------------------------------------------------
def upscale(model, low: torch.Tensor, factor: int, steps: int, noise: ImageNoise) -> torch.Tensor:
    """Images `factor` times larger than `low` whose factor×factor patch means are `low`'s pixels."""
    target = F.interpolate(low, scale_factor=factor, mode="nearest")

    def keep_means(x: torch.Tensor) -> torch.Tensor:
        means = F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")
        return x - means + target

    return edit(model, target, keep_means, steps, noise)


# --- interpolation -------------------------------------------------------------------------------------
def slerp(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """The great-circle path from a (alpha = 0) to b (alpha = 1), per image; exactly a and b at the ends."""
    if alpha == 0:
        return a.clone()
    if alpha == 1:
        return b.clone()
    dot = (a.flatten(1) * b.flatten(1)).sum(1) / (a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1))
    theta = torch.arccos(dot.clamp(-1, 1)).reshape(-1, *([1] * (a.dim() - 1)))
    return (torch.sin((1 - alpha) * theta) * a + torch.sin(alpha * theta) * b) / torch.sin(theta)


class _BlendedNoise(ImageNoise):
    """Noise that walks between two seeds' streams: each draw is slerp(a's draw, b's draw, alpha)."""

    def __init__(self, seed_a: int, seed_b: int, alphas: Sequence[float]):
        self.a, self.b, self.alphas = ImageNoise([seed_a]), ImageNoise([seed_b]), list(alphas)

    def draw(self, like: torch.Tensor, rows=None) -> torch.Tensor:
        one = like[:1]
        za, zb = self.a.draw(one), self.b.draw(one)
        rows = range(len(self.alphas)) if rows is None else rows
        return torch.cat([slerp(za, zb, self.alphas[r]) for r in rows])


def interpolate(model, shape: Sequence[int], seed_a: int, seed_b: int, num: int, steps: int,
                device="cpu") -> torch.Tensor:
    """`num` images from seed_a's sample to seed_b's: the starting noise and every reinjected draw
    interpolated along a great circle, so the ends are the two seeds' own samples."""
    from .sampling import multistep, onestep

    alphas = [i / (num - 1) for i in range(num)] if num > 1 else [0.0]
    noise = _BlendedNoise(seed_a, seed_b, alphas)
    like = torch.empty((num, *shape[1:]))
    x1 = noise.draw(like).to(device)
    sampler = multistep if steps > 1 else onestep
    return sampler(model, x1, default_times(steps), noise)


# --- image to image --------------------------------------------------------------------------------------
@torch.inference_mode()
def img2img(model, image: torch.Tensor, strength: float, steps: int, noise: ImageNoise) -> torch.Tensor:
    """Noise `image` to time t = strength ((1 − t)·y + t·z), then denoise it with `steps` multistep steps
    from there: strength 0 returns the image itself, 1 draws a new sample that ignores it."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError("strength must be between 0 and 1")
    if strength == 0:
        return image.clone()
    times = [strength * (1 - i / steps) for i in range(steps)]
    x = (1 - strength) * image + strength * noise.draw(image)
    return edit(model, image, lambda x: x, steps, noise, times=times, x1=x)


def fit_factor(model_resolution: int, image_size: int) -> int:
    """The upscaling factor for an image of `image_size` px: the largest power of two with
    image_size·factor ≤ the model's resolution (at least 2)."""
    factor = 2 ** max(1, int(math.floor(math.log2(max(1, model_resolution // max(1, image_size))))))
    if model_resolution % factor:
        raise ValueError(f"the model's {model_resolution} px are not a multiple of {factor}")
    return factor


# --- the front ends' entry point -------------------------------------------------------------------------
MODES = ("inpaint", "interpolate", "img2img", "colorize", "upscale")


def read_image(path, resolution: int, channels: int) -> torch.Tensor:
    """A picture of any size fitted to `resolution` the way training data is (shorter side, centre crop),
    as [1, channels, R, R] in [-1, 1]."""
    import numpy as np
    from PIL import Image

    from .data.folders import _prepare
    from .errors import DataError

    try:
        with Image.open(path) as im:
            pixels, _ = _prepare(im, resolution)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    x = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 127.5 - 1.0)
    x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
    if x.shape[1] != channels:  # grey into an RGB model: repeat; colour into a grey model: luma
        x = x.expand(-1, 3, -1, -1) if channels == 3 else torch.einsum("c,nchw->nhw", torch.tensor(LUMA), x)[:, None]
    return x.contiguous()


def conditioned(generator, num: int, classes=None):
    """The generator's model with the class of each of `num` results bound (precond.WithLabels), or the
    model itself for an unconditional one: the editing functions call f(x, t)."""
    from .precond import WithLabels

    if not generator.class_names:
        generator.labels_for(num, classes)  # a class asked of an unconditional model: the one-line refusal
        return generator.model
    return WithLabels(generator.model, generator.labels_for(num, classes))


def run(generator, mode: str, *, steps: int, seed: int, num: int, image=None, mask=None, seeds=None,
        strength: float = 0.5, classes=None) -> torch.Tensor:
    """One editing operation on a loaded `cmcore.generator.Generator`: images in [-1, 1], N×C×R×R. A
    class-conditional model edits towards `classes` (a name or index for all results; None: result i
    gets class i mod the number of classes)."""
    from .errors import ConfigError

    res, ch, device = generator.resolution, generator.channels, generator.device
    model = conditioned(generator, num, classes)
    noise = ImageNoise.for_images(seed, num)
    if mode == "interpolate":
        if not seeds or len(seeds) != 2:
            raise ConfigError("interpolate needs two seeds: --seeds A,B")
        return interpolate(model, (num, ch, res, res), seeds[0], seeds[1], num, steps, device)
    if image is None:
        raise ConfigError(f"{mode} needs an input image: --image FILE")
    if mode == "upscale":
        from PIL import Image

        with Image.open(image) as im:
            factor = fit_factor(res, min(im.size))
        low = read_image(image, res // factor, ch).to(device)
        return upscale(model, low.expand(num, -1, -1, -1), factor, steps, noise)
    picture = read_image(image, res, ch).to(device).expand(num, -1, -1, -1)
    if mode == "inpaint":
        if mask is None:
            raise ConfigError("inpaint needs a mask: --mask MASK.png (white pixels are filled)")
        holes = (read_image(mask, res, 1).to(device) + 1) / 2
        return inpaint(model, picture, holes, steps, noise)
    if mode == "img2img":
        return img2img(model, picture, strength, steps, noise)
    if mode == "colorize":
        if ch != 3:
            raise ConfigError("colorize needs a model trained on colour images")
        gray = torch.einsum("c,nchw->nhw", torch.tensor(LUMA, device=device), picture)[:, None]
        return colorize(model, gray, steps, noise)
    raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
