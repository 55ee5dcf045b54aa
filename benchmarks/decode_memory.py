"""Decode-memory benchmark: the peak resident memory of decoding a folder, against the final tensor.

    python -m benchmarks.decode_memory [--count 2000] [--size 512x384] [--resolution 128]
                                       [--mode rgb|gray|gray-then-rgb] [--folder DIR]

Writes COUNT synthetic images of SIZE pixels into a temporary folder (alternately PNG and JPEG;
``gray-then-rgb`` makes all but the last one grayscale, the case where the channel count changes
late), then decodes them once with ``cmcore.data.load_dataset`` at RESOLUTION px (cache written to
a temporary folder too) and prints the final tensor's size, the peak growth of the process's
resident memory during the load (RSS sampled every 2 ms from /proc/self/statm where there is one,
else ``getrusage``'s lifetime maximum), their ratio, and a JSON line with the same numbers.
The images are written by child processes, so their memory is not in this one's allocator.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _write_image(args: tuple[Path, int, int, int, bool]) -> None:
    from PIL import Image

    path, index, width, height, gray = args
    rng = np.random.default_rng(index)
    small = rng.integers(0, 256, (height // 16, width // 16) if gray else (height // 16, width // 16, 3), np.uint8)
    image = Image.fromarray(small, "L" if gray else "RGB").resize((width, height), Image.Resampling.BILINEAR)
    image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path, compress_level=1)


def make_folder(folder: Path, count: int, width: int, height: int, mode: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"{i:05d}.{'png' if i % 2 else 'jpg'}", i, width, height,
             mode == "gray" or (mode == "gray-then-rgb" and i < count - 1)) for i in range(count)]
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(_write_image, jobs, chunksize=16))


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return None


def max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class PeakSampler:
    """Samples the resident set every ``interval`` seconds in a thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak = interval, rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes() or 0)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() or 0)


def measure(folder: Path, resolution: int, cache_dir: Path) -> dict:
    from cmcore.data import load_dataset

    warm = cache_dir.parent / "warm-up"  # imports PIL's plugins and torch.save's paths first
    make_folder(warm, 2, 64, 48, "rgb")
    load_dataset(str(warm), resolution, cache_dir=cache_dir.parent / "warm-up-cache")
    gc.collect()
    proc = rss_bytes() is not None
    before = rss_bytes() if proc else max_rss_bytes()
    start = time.perf_counter()
    with PeakSampler() as sampler:
        dataset = load_dataset(str(folder), resolution, cache_dir=cache_dir)
    seconds = time.perf_counter() - start
    peak = sampler.peak if proc else max_rss_bytes()
    final = dataset.images.untyped_storage().nbytes()
    return {"images": len(dataset), "shape": list(dataset.images.shape), "final_bytes": final,
            "peak_growth_bytes": peak - before, "ratio": round((peak - before) / final, 3),
            "seconds": round(seconds, 2), "cache_hit": dataset.report.cache_hit,
            "sampler": "/proc/self/statm" if proc else "getrusage"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", default="512x384", help="WIDTHxHEIGHT of the synthetic images")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--mode", choices=("rgb", "gray", "gray-then-rgb"), default="rgb")
    ap.add_argument("--folder", type=Path, help="decode this folder instead of writing synthetic images")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="decode_memory_") as tmp:
        folder = args.folder
        if folder is None:
            folder = Path(tmp, "images")
            start = time.perf_counter()
            make_folder(folder, args.count, width, height, args.mode)
            print(f"wrote {args.count} {args.mode} images of {width}x{height} (PNG/JPEG) "
                  f"in {time.perf_counter() - start:.1f} s")
        result = measure(folder, args.resolution, Path(tmp, "cache"))
    mb = 1024 * 1024
    print(f"{result['images']} images -> uint8 {tuple(result['shape'])}: final tensor "
          f"{result['final_bytes'] / mb:.1f} MiB, peak RSS growth {result['peak_growth_bytes'] / mb:.1f} MiB, "
          f"ratio {result['ratio']:.2f} ({result['seconds']:.1f} s, {result['sampler']})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
