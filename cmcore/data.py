"""Data loading: one function turns a data spec into an in-memory uint8 tensor.

Training sets here are small (thousands to tens of thousands of images at 32-128 px),
so everything is decoded once into a single ``uint8 [N, C, H, W]`` tensor. That keeps
batch sampling trivial and reproducible (one seeded ``torch.Generator`` decides every
batch, so a resumed run sees the same batches) and costs a few hundred MB at most.

Spec forms (see ``load_dataset``): ``demo``, ``mnist:ROOT``, ``fashionmnist:ROOT``,
``cifar10:ROOT`` (torchvision files already on disk; this module never downloads) or
a folder of images. Folders come from users, so every file is opened defensively:
a bad file is skipped and reported with a reason, never fatal, and decoded folders are
cached so that the second load of an unchanged folder is instant.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .demo import make_demo
from .errors import DataError

log = logging.getLogger(__name__)

# Bump whenever decoding changes what ends up in the tensor: old caches then miss.
CACHE_FORMAT_VERSION = 1
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_CHUNK = 4096  # images per step when converting whole tensors (bounds peak memory)


@dataclass(frozen=True)
class _TorchvisionSet:
    label: str
    class_name: str
    where: str  # "{root}"-templated hint saying where the files must be


_TORCHVISION_SETS = {
    "mnist": _TorchvisionSet(
        "MNIST",
        "MNIST",
        "place the raw files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, uncompressed) in {root}/MNIST/raw/",
    ),
    "fashionmnist": _TorchvisionSet(
        "Fashion-MNIST",
        "FashionMNIST",
        "place the raw files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, uncompressed) "
        "in {root}/FashionMNIST/raw/",
    ),
    "cifar10": _TorchvisionSet(
        "CIFAR-10",
        "CIFAR10",
        "extract cifar-10-python.tar.gz so that {root}/cifar-10-batches-py/ holds "
        "data_batch_1..5, test_batch and batches.meta",
    ),
}


# --------------------------------------------------------------------------- public types


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class DataReport:
    """What a load did; shown in the app's Data pane and written next to runs."""

    source: str  # the spec string or the resolved folder path
    num_images: int
    resolution: int
    channels: int  # 1 or 3, the resolved choice
    skipped: list[SkippedFile] = field(default_factory=list)
    cache_hit: bool = False
    seconds: float = 0.0  # time to load (decode or cache read)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        kind = "grayscale" if self.channels == 1 else "RGB"
        how = "read from cache" if self.cache_hit else "loaded"
        lines = [
            f"{self.source}: {self.num_images} images, {self.resolution}x{self.resolution} "
            f"{kind}, {how} in {self.seconds:.2f} s",
        ]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} file(s):")
            lines += [f"  {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


@dataclass
class ImageDataset:
    images: torch.Tensor  # uint8 [N, C, H, W], CPU
    report: DataReport
    labels: torch.Tensor | None = None
    hflip: bool = False

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """A float32 batch [B, C, H, W] in [-1, 1], drawn with replacement.

        Every random choice comes from ``generator`` (indices first, then the flips),
        so restoring the generator state reproduces the batch exactly.
        """
        index = torch.randint(len(self), (batch_size,), generator=generator)
        batch = self.images[index].to(torch.float32).div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(batch_size, generator=generator) < 0.5
            batch[flip] = batch[flip].flip(-1)
        return batch

    def thumbnails(self, count: int) -> torch.Tensor:
        """The first ``count`` images (fewer if the set is smaller), uint8, a copy."""
        return self.images[:count].clone()


# --------------------------------------------------------------------------- entry points


def default_cache_dir() -> Path:
    env = os.environ.get("CMCORE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("consistency-studio")) / "datasets"


def describe_spec(spec: str) -> str:
    """Short label for a spec: "demo", "MNIST (/data)", "folder /x/y"."""
    if _is_demo(spec):
        return "demo"
    name, root = _split_torchvision(spec)
    if name:
        return f"{_TORCHVISION_SETS[name].label} ({root})"
    return f"folder {spec}"


def load_dataset(
    spec: str,
    resolution: int = 32,
    channels: str | int = "auto",
    hflip: bool = False,
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    max_pixels: int = 64_000_000,
) -> ImageDataset:
    """Load ``spec`` as square ``resolution`` images with ``channels`` (auto, 1 or 3).

    ``progress(done, total)`` is called while decoding; ``cancel()`` returning True
    aborts with ``DataError("cancelled")``. Folder images larger than ``max_pixels``
    are skipped before being decoded. Every expected failure raises ``DataError``.
    """
    if not isinstance(resolution, int) or resolution < 4:
        raise DataError(f"resolution must be a whole number of at least 4 pixels, got {resolution!r}")
    wanted = _parse_channels(channels)
    start = time.perf_counter()
    if _is_demo(spec):
        images, labels = make_demo(resolution, wanted or 3)
        report = DataReport("demo", len(images), resolution, images.shape[1])
    else:
        name, root = _split_torchvision(spec)
        if name:
            images, labels = _load_torchvision(name, root, resolution, wanted, progress, cancel)
            report = DataReport(spec, len(images), resolution, images.shape[1])
        else:
            folder = Path(spec).expanduser()
            if not folder.is_dir():
                raise DataError(
                    f"Data source not found: {spec!r} is neither a folder nor one of "
                    "demo, mnist:ROOT, fashionmnist:ROOT, cifar10:ROOT"
                )
            images, report = _load_folder(
                folder.resolve(), resolution, channels, wanted, cache_dir,
                progress, cancel, max_pixels,
            )
            labels = None
    report.seconds = time.perf_counter() - start
    return ImageDataset(images, report, labels, hflip)


# --------------------------------------------------------------------------- spec helpers


def _is_demo(spec: str) -> bool:
    return spec.strip().lower() == "demo"


def _split_torchvision(spec: str) -> tuple[str | None, str]:
    """("mnist", "/data") for "mnist:/data"; (None, spec) for anything else."""
    name, sep, root = spec.partition(":")
    if sep and name.strip().lower() in _TORCHVISION_SETS:
        return name.strip().lower(), root.strip()
    return None, spec


def _parse_channels(channels: str | int) -> int | None:
    """1 or 3, or None for "auto"."""
    value = str(channels).strip().lower()
    if value == "auto":
        return None
    if value in ("1", "3"):
        return int(value)
    raise DataError(f"channels must be auto, 1 or 3, got {channels!r}")


# --------------------------------------------------------------------------- torchvision


def _load_torchvision(
    name: str,
    root: str,
    resolution: int,
    wanted: int | None,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train split of a torchvision set already on disk (``download=False``, always)."""
    info = _TORCHVISION_SETS[name]
    if not root:
        raise DataError(f"{name}: needs the folder holding the files, e.g. {name}:/data")
    root = str(Path(root).expanduser())
    import torchvision.datasets  # deferred: importing torchvision costs ~1 s at startup

    try:
        dataset = getattr(torchvision.datasets, info.class_name)(root, train=True, download=False)
    except RuntimeError:
        hint = info.where.format(root=root)
        raise DataError(
            f"{info.label} not found under {root}: {hint} (torchvision layout) "
            "— this app never downloads"
        ) from None
    except Exception as exc:
        raise DataError(f"{info.label} under {root} could not be read: {exc}") from exc
    images = torch.as_tensor(dataset.data)  # MNIST: tensor [N,H,W]; CIFAR: array [N,H,W,C]
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return _resize_all(images, resolution, wanted or images.shape[1], progress, cancel), labels


def _resize_all(
    images: torch.Tensor,
    resolution: int,
    channels: int,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> torch.Tensor:
    """Square uint8 images [N, C, h, h] -> [N, channels, resolution, resolution]."""
    total = len(images)
    out = torch.empty((total, channels, resolution, resolution), dtype=torch.uint8)
    for start in range(0, total, _CHUNK):
        _check_cancel(cancel)
        chunk = images[start : start + _CHUNK]
        if chunk.shape[-1] != resolution:
            resized = F.interpolate(
                chunk.float(), size=(resolution, resolution), mode="bicubic",
                antialias=True, align_corners=False,
            )
            chunk = resized.round_().clamp_(0, 255).to(torch.uint8)
        out[start : start + len(chunk)] = _match_channels(chunk, channels)
        if progress:
            progress(start + len(chunk), total)
    return out


def _match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 [..., C, H, W] with C in {1, 3} -> ``channels``; gray uses PIL's luma."""
    have = images.shape[-3]
    if have == channels:
        return images
    if channels == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    r, g, b = images.to(torch.int32).unbind(-3)
    return ((r * 299 + g * 587 + b * 114 + 500) // 1000).to(torch.uint8).unsqueeze(-3)


def _check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise DataError("cancelled")


# --------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class _Candidate:
    path: Path
    relative: str
    size: int  # -1 when stat failed (decoding then reports why)
    mtime_ns: int


def _load_folder(
    folder: Path,
    resolution: int,
    channels_setting: str | int,
    wanted: int | None,
    cache_dir: Path | None,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
    max_pixels: int,
) -> tuple[torch.Tensor, DataReport]:
    candidates = _find_candidates(folder)
    if not candidates:
        exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise DataError(f"No image files ({exts}) found in {folder}")
    cache_file = Path(cache_dir or default_cache_dir()) / (
        _cache_key(folder, resolution, channels_setting, max_pixels, candidates) + ".pt"
    )
    cached = _read_cache(cache_file, resolution, len(candidates))
    if cached is not None:
        images, skipped = cached
        return images, DataReport(
            str(folder), len(images), resolution, images.shape[1], skipped, cache_hit=True
        )
    _check_cancel(cancel)
    results = _decode_all(candidates, resolution, max_pixels, progress, cancel)
    skipped = [
        SkippedFile(str(c.path), r) for c, r in zip(candidates, results) if isinstance(r, str)
    ]
    decoded = [r for r in results if not isinstance(r, str)]
    if not decoded:
        first = skipped[0]
        raise DataError(
            f"No usable image in {folder}: all {len(skipped)} image file(s) were skipped "
            f"(e.g. {first.path}: {first.reason})"
        )
    channels = wanted or (1 if all(gray for _, gray in decoded) else 3)
    images = _stack(decoded, channels, resolution)
    _write_cache(cache_file, images, skipped)
    return images, DataReport(str(folder), len(images), resolution, channels, skipped)


def _find_candidates(folder: Path) -> list[_Candidate]:
    """Image-extension files under ``folder``, sorted; directory links are not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                path = Path(dirpath, name)
                found.append(_stat_candidate(path, path.relative_to(folder).as_posix()))
    return sorted(found, key=lambda c: c.relative)


def _stat_candidate(path: Path, relative: str) -> _Candidate:
    try:
        st = path.stat()
    except OSError:
        return _Candidate(path, relative, -1, -1)
    return _Candidate(path, relative, st.st_size, st.st_mtime_ns)


def _decode_all(
    candidates: Sequence[_Candidate],
    resolution: int,
    max_pixels: int,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> list[tuple[np.ndarray, bool] | str]:
    """Decode in a few threads (PIL releases the GIL); results keep the input order.

    PIL's decompression-bomb *warning* is turned into an error for the duration, so a
    huge image is skipped rather than decoded. Before Python 3.14 warning filters are
    process-wide, so this is set once here around the pool (``catch_warnings`` restores
    the previous filters) rather than per worker thread, which would race.
    """
    total = len(candidates)
    results: list[tuple[np.ndarray, bool] | str | None] = [None] * total
    workers = max(2, min(4, os.cpu_count() or 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="cmcore-decode")
        try:
            futures = {
                pool.submit(_decode_file, c, resolution, max_pixels): i
                for i, c in enumerate(candidates)
            }
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if progress:
                    progress(done, total)
                _check_cancel(cancel)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results


def _decode_file(
    candidate: _Candidate, resolution: int, max_pixels: int
) -> tuple[np.ndarray, bool] | str:
    """(uint8 array [R,R] or [R,R,3], is_grayscale), or the reason the file is skipped.

    Never raises: every failure of a user's file becomes a short reason.
    """
    if candidate.size == 0:
        return "empty file"
    try:
        with Image.open(candidate.path) as im:
            width, height = im.size
            if width * height > max_pixels:
                return f"too large ({width}×{height} pixels)"
            return _prepare(im, resolution)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Raised by Image.open before the size is known to us; PIL's message has it.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return f"too large ({found.group(1)} pixels)" if found else "too large"
    except UnidentifiedImageError:
        return "not an image"
    except OSError as exc:
        if exc.errno is not None:
            return f"unreadable: {exc.strerror}"
        return "truncated or corrupt"
    except Exception:  # PIL raises SyntaxError, ValueError, EOFError... on broken files
        return "truncated or corrupt"


def _prepare(im: Image.Image, resolution: int) -> tuple[np.ndarray, bool]:
    """First frame -> upright 8-bit L or RGB, shorter side to ``resolution``, centre crop."""
    gray = _is_grayscale(im)
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; ask for no less than needed.
    scale = resolution / min(im.size)
    im.draft(im.mode, (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
    im = ImageOps.exif_transpose(im)
    im = _to_8bit(im, gray)
    width, height = im.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    im = im.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
    return np.array(im), gray  # a writable copy: torch.from_numpy warns on read-only arrays


def _is_grayscale(im: Image.Image) -> bool:
    """By mode; palette images count as gray when every palette entry is a gray."""
    if im.mode in GRAYSCALE_MODES:
        return True
    if im.mode in ("P", "PA") and im.palette is not None and im.palette.mode == "RGB":
        entries = np.asarray(im.getpalette() or [1, 0, 0]).reshape(-1, 3)
        return bool((entries == entries[:, :1]).all())
    return False


def _to_8bit(im: Image.Image, gray: bool) -> Image.Image:
    """Any PIL mode -> "L" (if ``gray``) or "RGB"; transparency is composited onto white."""
    if im.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_l(im)
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return im.convert("L" if gray else "RGB")


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer images are taken as 16-bit (the PNG/TIFF norm) and floats as
    [0, 1] when they fit it (else 16-bit), then scaled to 8 bits; PIL would clip instead.
    """
    values = np.asarray(im).astype(np.float64)
    full_scale = 1.0 if im.mode == "F" and values.size and values.max() <= 1.0 else 65535.0
    scaled = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, "L")


def _stack(
    decoded: Sequence[tuple[np.ndarray, bool]], channels: int, resolution: int
) -> torch.Tensor:
    """Decoded arrays -> one uint8 [N, channels, R, R] tensor (gray repeated or RGB->luma)."""
    out = torch.empty((len(decoded), channels, resolution, resolution), dtype=torch.uint8)
    for i, (array, _) in enumerate(decoded):
        image = torch.from_numpy(array)
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
        out[i] = _match_channels(image, channels)
    return out


# --------------------------------------------------------------------------- cache


def _cache_key(
    folder: Path,
    resolution: int,
    channels_setting: str | int,
    max_pixels: int,
    candidates: Sequence[_Candidate],
) -> str:
    """Everything that decides the decoded tensor; any change gives another key."""
    content = [
        CACHE_FORMAT_VERSION,
        str(folder),
        resolution,
        str(channels_setting).strip().lower(),
        max_pixels,
        [(c.relative, c.size, c.mtime_ns) for c in candidates],
    ]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def _read_cache(
    path: Path, resolution: int, num_candidates: int
) -> tuple[torch.Tensor, list[SkippedFile]] | None:
    """The cached (images, skipped), or None when absent, unreadable or malformed."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        images = payload["images"]
        skipped = [SkippedFile(str(p), str(r)) for p, r in payload["skipped"]]
        valid = (
            payload["format"] == CACHE_FORMAT_VERSION
            and isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8
            and images.ndim == 4
            and images.shape[1] in (1, 3)
            and images.shape[2:] == (resolution, resolution)
            and len(images) > 0
            and len(images) + len(skipped) == num_candidates
        )
    except Exception as exc:  # a corrupt cache is only a slower load, never an error
        log.warning("ignoring unreadable data cache %s: %s", path, exc)
        return None
    return (images, skipped) if valid else None


def _write_cache(path: Path, images: torch.Tensor, skipped: Sequence[SkippedFile]) -> None:
    """Atomic write (temp file + rename), so a crash never leaves a half-written cache."""
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "images": images,
        "skipped": [[s.path, s.reason] for s in skipped],
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            torch.save(payload, f)
        os.replace(tmp, path)
    except OSError as exc:  # no cache is only a slower next load
        log.warning("could not write data cache %s: %s", path, exc)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
