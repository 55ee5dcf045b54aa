"""Does cmcore.score rank sample sets as the demo benchmark does? (issue 23)

    python -m benchmarks.score_agreement [--out runs/score_agreement] [--num 512] [--seed 123] [--overfit]

Trains a CT run (2000 steps) and a flow teacher (1000 steps) on the demo data at 32 px without
its held-out images (cmcore.score.train_indices; the runs record the split), keeping CT snapshots at
steps 100-2000. The *selection* sets, on which the score was chosen, are every CT snapshot at 1, 2
and 4 multistep steps and the teacher at 1-16 Euler steps; the *validation* sets, added after the
choice, are the CT snapshots through the ODE sampler at 2 and 8 Euler steps. Each set is scored
with the demo FD (the three demo classifiers' mean, benchmarks/fid_demo.py) and with each candidate
score against the 82 held-out demo images, and the table shows every candidate's Spearman rank
correlation with the demo FD. Runs, samples and the classifiers are kept under --out (and
runs/.fid_classifiers), so a second run only scores. With --overfit, CT also trains on 32 images
until it overfits and each checkpoint's denoising-error gap is printed. The last line is one JSON
object. Results and what they mean: docs/score.md.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import harness
from cmcore import TrainConfig

CT_STEPS = 2000
CT_KEEP = (100, 250, 500, 1000, 2000)  # the CT snapshots sampled
FLOW_STEPS = 1000
CT_SAMPLER_STEPS = (1, 2, 4)
FLOW_EULER_STEPS = (1, 2, 4, 8, 16)
VALIDATION_EULER_STEPS = (2, 8)  # the CT snapshots through the ODE sampler: sets not seen when choosing
SPLIT_SEED = 0


# --- the runs and their samples ------------------------------------------------------------------------------
def _config(method: str, steps: int) -> TrainConfig:
    return TrainConfig(method=method, data="demo", resolution=32, max_steps=steps, max_minutes=0,
                       checkpoint_every=50, preview_every=0, seed=0)


def demo_split() -> tuple[torch.Tensor, list[int], list[int]]:
    """The demo images a run trains on (32 px, RGB), their training and held-out indices (seed 0)."""
    from cmcore.data.demo import make_demo
    from cmcore.split import held_out_indices, train_indices

    images, _ = make_demo(32, 3)
    return images, train_indices(len(images), SPLIT_SEED), held_out_indices(len(images), SPLIT_SEED)


def training_data():
    """The demo data without its held-out images, as the Trainer takes it."""
    from cmcore.data import DataReport, ImageDataset

    images, train, _ = demo_split()
    return ImageDataset(images[train], DataReport("demo", len(train), 32, 3))


def train_kept(out: Path, method: str, steps: int, keep: tuple[int, ...]) -> dict[int, Path]:
    """Train `method` into OUT/METHOD on the demo data without its held-out images (the run's split.json
    records them), copying the checkpoints of the steps in `keep` to OUT/METHOD_kept (a run keeps only its
    newest few); the kept files by step. Kept files already there are reused."""
    from cmcore import events
    from cmcore.split import write_split
    from cmcore.training import Trainer

    run, kept = out / method, out / f"{method}_kept"
    files = {s: kept / f"step{s:06d}.safetensors" for s in keep}
    if not all(f.exists() for f in files.values()):
        shutil.rmtree(run, ignore_errors=True)
        kept.mkdir(parents=True, exist_ok=True)

        def on_event(event) -> None:
            if isinstance(event, events.CheckpointSaved) and event.step in files:
                shutil.copyfile(event.path, files[event.step])

        started = time.perf_counter()
        Trainer(_config(method, steps), run, on_event=on_event, dataset=training_data()).run()
        print(f"trained {method} {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    if run.is_dir():
        write_split(run, 4096, SPLIT_SEED)  # what it trained without: `cmcore score OUT/ct` scores against it
    return files


def sample_sets(out: Path, num: int, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """{"selection": {name: images}, "validation": {...}}, num×3×32×32 floats in [-1, 1] each; cached in
    OUT/sets_{group}_{num}_{seed}.pt."""
    from cmcore.generator import load_generator

    ct = train_kept(out, "ct", CT_STEPS, CT_KEEP)
    flow = train_kept(out, "flow", FLOW_STEPS, (FLOW_STEPS,))[FLOW_STEPS]
    groups = {}
    for group in ("selection", "validation"):
        cache = out / f"sets_{group}_{num}_{seed}.pt"
        if cache.exists():
            groups[group] = torch.load(cache, weights_only=True)
            continue
        sets = {}
        for step, file in ct.items():
            gen = load_generator(file)
            if group == "selection":
                for k in CT_SAMPLER_STEPS:
                    sets[f"CT {step} steps, {k}-step"] = gen.sample_tensor(num, k, seed=seed)
            else:
                for k in VALIDATION_EULER_STEPS:
                    sets[f"CT {step} steps, ODE Euler {k}"] = gen.sample_tensor(num, k, seed=seed, sampler="ode")
        if group == "selection":
            gen = load_generator(flow)
            for k in FLOW_EULER_STEPS:
                sets[f"flow {FLOW_STEPS} steps, Euler {k}"] = gen.sample_tensor(num, k, seed=seed, sampler="ode")
        torch.save(sets, cache)
        groups[group] = sets
    return groups


# --- the candidates --------------------------------------------------------------------------------------------
def pixels8(x: torch.Tensor) -> torch.Tensor:
    """The image area-averaged to 8×8: layout and colour, nothing finer."""
    from cmcore.score import as_float

    return F.interpolate(as_float(x), size=(8, 8), mode="area").flatten(1).double()


def _random_weights(channels: int, seed: int, widths=(16, 32, 64)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen, weights, cin = torch.Generator().manual_seed(seed), [], channels
    for w in widths:
        weights.append((torch.randn(w, cin, 3, 3, generator=gen) * math.sqrt(2 / (cin * 9)),
                        torch.randn(w, generator=gen) * 0.1))
        cin = w
    return weights


@torch.no_grad()
def random_net(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random (He-initialised, fixed seed) 3-layer ReLU conv net at ≤ 64 px: the mean and spread of every
    channel of every layer (multi-scale: each layer sees twice the area of the one before)."""
    from cmcore.score import as_float

    out = []
    for chunk in x.split(256):
        h = as_float(chunk)
        if h.shape[-1] > 64:
            h = F.interpolate(h, size=(64, 64), mode="area")
        feats = []
        for w, b in _random_weights(h.shape[1], seed):
            h = F.relu(F.conv2d(h, w, b, padding=1))
            feats += [h.mean((2, 3)), h.std((2, 3))]
            if h.shape[-1] > 4:
                h = F.avg_pool2d(h, 2)
        out.append(torch.cat(feats, 1))
    return torch.cat(out).double()


@torch.no_grad()
def basic_statistics(x: torch.Tensor) -> torch.Tensor:
    """The chosen statistics without luma quantiles, chroma and edge coherence: per pyramid level the mean
    and spread of each channel, of the gradient magnitude and of the band-pass response."""
    from cmcore.score import _luma, as_float

    cur, levels = as_float(x), []
    while True:
        y = _luma(cur)
        gx, gy = y[..., :, 1:] - y[..., :, :-1], y[..., 1:, :] - y[..., :-1, :]
        g = (gx[..., :-1, :].square() + gy[..., :, :-1].square()).sqrt()
        band = y - F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, 1)
        levels.append(torch.cat([cur.mean((2, 3)), cur.std((2, 3)), g.mean((1, 2, 3))[:, None],
                                 g.std((1, 2, 3))[:, None], band.abs().mean((1, 2, 3))[:, None],
                                 band.square().mean((1, 2, 3)).sqrt()[:, None]], 1))
        if cur.shape[-1] // 2 < 8:
            break
        cur = F.avg_pool2d(cur, 2)
    return torch.cat(levels, 1).double()


class _Critic(nn.Module):
    def __init__(self, channels: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(4, width), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.GroupNorm(8, 2 * width), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.GroupNorm(8, 4 * width), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * width, 2)

    def forward(self, x):
        return self.head(self.features(x))


def _degraded(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What bad samples look like, without labels: blends, blurs, smoothed noise, grain."""
    n, c, h, w = x.shape
    blend = (x + x[torch.randperm(n, generator=gen)]) / 2
    blur = F.interpolate(F.avg_pool2d(x, 4), size=(h, w), mode="bilinear", align_corners=False)
    smooth = F.interpolate(torch.randn(n, c, h // 4, w // 4, generator=gen), size=(h, w), mode="bilinear",
                           align_corners=False).clamp(-1, 1)
    grain = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    return torch.stack([blend, blur, smooth, grain])[torch.randint(4, (n,), generator=gen), torch.arange(n)]


def train_critic(images: torch.Tensor, steps: int = 300, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A small net trained on the user's (training) images to tell them from degraded copies; its 64
    pooled features."""
    from cmcore.score import as_float

    x = as_float(images)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _Critic(x.shape[1])
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    labels = torch.cat([torch.zeros(32, dtype=torch.long), torch.ones(32, dtype=torch.long)])
    with torch.enable_grad():
        for _ in range(steps):
            real = x[torch.randint(len(x), (32,), generator=gen)]
            bad = _degraded(x[torch.randint(len(x), (32,), generator=gen)], gen)
            loss = F.cross_entropy(net(torch.cat([real, bad])), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([net.features(as_float(c)) for c in images.split(256)]).double()

    return features


def candidates(train_images: torch.Tensor) -> dict[str, tuple[str, list[Callable]]]:
    """name → (what it is, feature functions: one, or several whose FDs are averaged)."""
    from cmcore.score import quality_features

    started = time.perf_counter()
    critic = train_critic(train_images)
    print(f"critic trained in {time.perf_counter() - started:.1f} s", flush=True)
    return {
        "pixels": ("the image area-averaged to 8×8", [pixels8]),
        "randnet": ("one random conv net (seed 0): per-layer channel mean and spread", [random_net]),
        "randnet×3": ("three random conv nets (seeds 0-2): the mean of their FDs",
                      [lambda x, s=s: random_net(x, s) for s in range(3)]),
        "critic": ("a small net trained 300 steps on the training images against degraded copies", [critic]),
        "stats-basic": ("per pyramid level: colour, gradient and band-pass mean and spread", [basic_statistics]),
        "stats+pixels": ("the chosen statistics plus the 8×8 image",
                         [lambda x: torch.cat([quality_features(x), pixels8(x)], 1)]),
        "stats (chosen)": ("cmcore.score.quality_features: stats-basic plus luma quantiles, chroma, edge coherence",
                           [quality_features]),
    }


def kernel_inception_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The unbiased MMD² with the cubic polynomial kernel (KID), ×1000."""
    d = a.shape[1]
    kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    m, n = len(a), len(b)
    return 1000 * float((kxx.sum() - kxx.diag().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diag().sum()) / (n * (n - 1))
                        - 2 * kxy.mean())


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""
    def ranks(v):
        order, r, i = sorted(range(len(v)), key=lambda j: v[j]), [0.0] * len(v), 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))


# --- a run that overfits -------------------------------------------------------------------------------------
OVERFIT_IMAGES, OVERFIT_STEPS = 64, 800


def overfit(out: Path) -> list[dict]:
    """CT on a folder of 64 demo images at 16 px (32 held out, 32 trained on) for 800 steps of 16 (400
    passes over the data), checkpoints every 200; each checkpoint's 1-step score, near-copy share and
    denoising-error gap (cmcore.score.score_checkpoint)."""
    from PIL import Image

    from cmcore.data import DataReport, ImageDataset, load_dataset
    from cmcore.data.demo import make_demo
    from cmcore.rundir import checkpoint_dir, checkpoint_files, complete_steps
    from cmcore.score_report import score_checkpoint
    from cmcore.split import train_indices, write_split
    from cmcore.training import Trainer

    folder, run = out / "tiny64" / "images", out / "tiny64" / "run"
    images, _ = make_demo(16, 3, count=OVERFIT_IMAGES, seed=77)
    if not (run / "config.toml").exists() or not complete_steps(checkpoint_dir(run)):
        shutil.rmtree(out / "tiny64", ignore_errors=True)
        folder.mkdir(parents=True)
        for i, image in enumerate(images):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"img_{i:03d}.png")
        data = load_dataset(str(folder.resolve()), 16, 3)
        train = train_indices(len(data), 0)
        config = TrainConfig(method="ct", data=str(folder.resolve()), resolution=16, max_steps=OVERFIT_STEPS,
                             max_minutes=0, checkpoint_every=200, preview_every=0, seed=0)
        Trainer(config, run, dataset=ImageDataset(data.images[train], DataReport(str(folder), len(train), 16, 3))).run()
        write_split(run, len(data), 0)
    rows = []
    for step in complete_steps(checkpoint_dir(run)):
        report = score_checkpoint(checkpoint_files(run, step)[0], steps=(1,)).to_dict()
        rows.append({"step": step, "score": report["scores"]["1"], "near_copies": report["near_copies"]["share"],
                     **{k: report["denoising"][k] for k in ("train", "held_out", "gap")}})
    return rows


# --- the study --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/score_agreement"))
    ap.add_argument("--num", type=int, default=512, help="samples per set")
    ap.add_argument("--seed", type=int, default=harness.SEED, help="the sampling seed")
    ap.add_argument("--overfit", action="store_true", help="also train CT on 32 images until it overfits and print "
                    "its denoising-error gap per checkpoint (about 5 more CPU-minutes)")
    args = ap.parse_args(argv)
    from benchmarks.fid_demo import DemoFDEnsemble, to_float
    from cmcore.data.demo import make_demo
    from cmcore.score import Scorer, frechet_distance

    started = time.perf_counter()
    groups = sample_sets(args.out, args.num, args.seed)
    sets = {name: x for group in groups.values() for name, x in group.items()}
    group_of = {name: group for group, members in groups.items() for name in members}
    images, train, held = demo_split()
    real = to_float(make_demo(32, 3, count=args.num, seed=3000)[0])  # a perfect model's samples: not ranked

    metric = DemoFDEnsemble(32, [0, 1, 2])
    demo = {name: metric(x) for name, x in {**sets, "real demo images": real}.items()}
    cands = candidates(images[train])
    ours: dict[str, dict[str, dict[str, float]]] = {}  # candidate → statistic → set → value
    seconds = {}
    for cname, (_, functions) in cands.items():
        t0 = time.perf_counter()
        scorers = [Scorer(images[held], features=f) for f in functions]
        fd, kid = {}, {}
        for name, x in {**sets, "real demo images": real}.items():
            embedded = [(s.embed(x), s.reference) for s in scorers]  # Scorer.score is frechet_distance of these
            fd[name] = sum(frechet_distance(a, b) for a, b in embedded) / len(scorers)
            kid[name] = sum(kernel_inception_distance(a, b) for a, b in embedded) / len(scorers)
        ours[cname] = {"FD": fd, "KID": kid}
        seconds[cname] = time.perf_counter() - t0

    names = list(sets)
    short = {c: c.replace(" (chosen)", "*") for c in cands}
    print(f"\n{len(names)} sample sets of {args.num} (seed {args.seed}), demo 32 px; our scores against the "
          f"{len(held)} held-out demo images (FD of standardised features; lower is better)\n")
    print("| sample set | group | demo FD (mean of 3) | " + " | ".join(short[c] for c in cands) + " |")
    print("|---|---|---|" + "---|" * len(cands))
    for name in [*names, "real demo images"]:
        print(f"| {name} | {group_of.get(name, 'floor')} | {demo[name]['fd']:.1f} | "
              + " | ".join(f"{ours[c]['FD'][name]:.2f}" for c in cands) + " |")

    subsets = {"all": names, "selection": [n for n in names if group_of[n] == "selection"],
               "validation": [n for n in names if group_of[n] == "validation"]}
    target = {k: [demo[n]["fd"] for n in v] for k, v in subsets.items()}
    rho = {c: {stat: {k: spearman(target[k], [ours[c][stat][n] for n in v]) for k, v in subsets.items()}
               for stat in ("FD", "KID")} for c in cands}
    print(f"\nSpearman rank correlation with the demo FD (all {len(names)} sets / the {len(subsets['selection'])} "
          f"selection sets / the {len(subsets['validation'])} validation sets), and seconds to score every set:\n")
    print("| candidate | what | FD | KID | seconds |")
    print("|---|---|---|---|---|")
    for c, (what, _) in cands.items():
        cell = {s: " / ".join(f"{rho[c][s][k]:.3f}" for k in subsets) for s in ("FD", "KID")}
        print(f"| {short[c]} | {what} | {cell['FD']} | {cell['KID']} | {seconds[c]:.1f} |")
    each = {i: spearman(target["all"], [demo[n]["fd_each"][i] for n in names]) for i in range(3)}
    print("\nfor scale: each demo classifier's own FD against the three's mean, all sets: "
          + ", ".join(f"seed {i} {r:.3f}" for i, r in each.items()))
    chosen = Scorer(images[held])
    t0 = time.perf_counter()
    chosen.score(sets[names[-1]][:256])
    one = time.perf_counter() - t0
    print(f"\none score (256 samples against the {len(held)} held-out images, features included): {one:.3f} s")
    overfitting = overfit(args.out) if args.overfit else []
    if overfitting:
        print(f"\nCT on {OVERFIT_IMAGES // 2} images (16 px; {OVERFIT_IMAGES // 2} held out): denoising error at "
              "t = 0.2 / 0.5 / 0.8, training and held out, the gap, the 1-step score and the near-copy share\n")
        print("| step | training | held out | gap | 1-step score | near copies |")
        print("|---|---|---|---|---|---|")
        for r in overfitting:
            cells = [" / ".join(f"{v:{fmt}}" for v in r[k]) for k, fmt in (("train", ".4f"), ("held_out", ".4f"),
                                                                          ("gap", "+.4f"))]
            print(f"| {r['step']} | {' | '.join(cells)} | {r['score']:.1f} | {100 * r['near_copies']:.0f} % |")
    print(f"total {time.perf_counter() - started:.0f} s")
    print(json.dumps({"num": args.num, "seed": args.seed, "held_out": len(held),
                      "sets": {n: {"group": group_of.get(n, "floor"), "demo_fd": demo[n]["fd"],
                                   "demo_fd_each": demo[n]["fd_each"],
                                   **{c: ours[c]["FD"][n] for c in cands}} for n in [*names, "real demo images"]},
                      "spearman": rho, "classifier_spearman": each, "seconds": seconds,
                      "one_score_seconds": one, "overfit": overfitting}))


if __name__ == "__main__":
    harness.run_main(main)
