"""A Fréchet distance for the demo data set, in the features of a small shape classifier.

Inception weights cannot be downloaded here, and they would judge 32-pixel shapes poorly
anyway. A CNN trained to tell the demo's four shapes apart has features that respond to
exactly what makes a demo sample right (a clean shape of one class, its colour and place);
the Fréchet distance between Gaussians fitted to real and generated features then measures
both quality and diversity, as FID does. We also report `recognisable`: the fraction of
samples the classifier assigns to one of the four shapes with probability > 0.9. So that
noise and blobs do not pass for shapes, the classifier has a fifth class, "junk": blends of
several demo images, blurred images, smoothed noise and shapes under heavy noise.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cmcore.data.demo import make_demo
from cmcore.rundir import atomic_write_bytes


class ShapeNet(nn.Module):
    def __init__(self, channels: int, classes: int = 4, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.GroupNorm(8, 2 * width), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.GroupNorm(8, 2 * width), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 64), nn.SiLU())
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        return self.head(self.features(x))


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.float() / 127.5 - 1


def junk(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Images that are not one clean shape: blends, blurs, smoothed noise (floats in [-1, 1])."""
    x = to_float(images)
    n, c, h, w = x.shape
    perm = [torch.randperm(n, generator=gen) for _ in range(2)]
    blend = (x + x[perm[0]] + x[perm[1]]) / 3
    blur = F.interpolate(F.avg_pool2d(x, 4), size=(h, w), mode="bilinear", align_corners=False)
    noise = F.interpolate(torch.randn(n, c, h // 4, w // 4, generator=gen), size=(h, w), mode="bilinear",
                          align_corners=False).clamp(-1, 1)
    grain = (x + 0.5 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)  # a shape under heavy noise
    choices = torch.stack([blend, blur, noise, grain])
    return choices[torch.randint(4, (n,), generator=gen), torch.arange(n)]


def train_classifier(resolution: int, channels: int = 3, steps: int = 1500, seed: int = 0) -> ShapeNet:
    images, labels = make_demo(resolution, channels, count=4096, seed=1000 + seed)  # not the training seed
    torch.manual_seed(seed)
    net = ShapeNet(channels, classes=5)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(images), (64,), generator=gen)
        x = to_float(images[idx])
        bad = junk(images[torch.randint(len(images), (16,), generator=gen)], gen)
        x, y = torch.cat([x, bad]), torch.cat([labels[idx], torch.full((16,), 4)])
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


# Training a classifier takes minutes on a busy CPU; every evaluation of a benchmark needs the same ones.
CACHE = Path(os.environ.get("DEMO_FD_CACHE", Path(__file__).resolve().parent.parent / "runs" / ".fid_classifiers"))


def cached_classifier(resolution: int, channels: int, seed: int, steps: int = 1500) -> ShapeNet:
    path = CACHE / f"shapenet_r{resolution}_c{channels}_seed{seed}_steps{steps}.pt"
    if path.exists():
        net = ShapeNet(channels, classes=5)
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    # One thread while training: the classifier (and so every FD) is then the same on any machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train_classifier(resolution, channels, steps, seed)
    finally:
        torch.set_num_threads(threads)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())  # two evaluations at once never read half a file
    return net


@torch.no_grad()
def features(net: ShapeNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = [(net.features(chunk), ) for chunk in x.split(256)]
    feats = torch.cat([o[0] for o in out]).double()
    probs = torch.cat([net.head(o[0]).softmax(1) for o in out])
    return feats, probs


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(ca)
    sqrt_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + ca.trace() + cb.trace() - 2 * cross)


class DemoFD:
    """fd(x) for generated images x in [-1, 1]; reference = held-out demo images."""

    def __init__(self, resolution: int, channels: int = 3, reference: int = 2048, seed: int = 0):
        self.net = cached_classifier(resolution, channels, seed)
        ref, labels = make_demo(resolution, channels, count=reference, seed=2000)
        self.ref_feats, probs = features(self.net, to_float(ref))
        self.accuracy = float((probs.argmax(1) == labels).float().mean())
        self.junk_recognised = float((probs[:, :4].max(1).values > 0.9).float().mean())

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        feats, probs = features(self.net, x.float().clamp(-1, 1))
        return {"fd": frechet_distance(feats, self.ref_feats),
                "recognisable": float((probs[:, :4].max(1).values > 0.9).float().mean())}


class DemoFDEnsemble:
    """The same metric under several independently trained classifiers: mean and spread of FD."""

    def __init__(self, resolution: int, seeds: list[int]):
        self.members = [DemoFD(resolution, seed=s) for s in seeds]
        self.accuracy = sum(m.accuracy for m in self.members) / len(self.members)

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        runs = [m(x) for m in self.members]
        fds = [r["fd"] for r in runs]
        return {"fd": sum(fds) / len(fds), "fd_min": min(fds), "fd_max": max(fds), "fd_each": fds,
                "recognisable": sum(r["recognisable"] for r in runs) / len(runs)}
