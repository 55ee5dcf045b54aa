"""The U-Net backbone F(x, c_noise) and its size presets.

Three layers kept apart as in EDM's networks.py: primitives (embedding, residual block,
attention), the backbone (`UNet`), and the preconditioning wrapper (precond.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetSpec:
    base_channels: int
    channel_mults: tuple[int, ...]  # one per resolution level (before extension to large images)
    num_res_blocks: int
    attn_max_resolution: int  # self-attention at feature maps this size or smaller
    patch: int = 1  # pixel-unshuffle the input by this factor: p² less work at full resolution


PRESETS = {
    # On a CPU the full-resolution convolutions dominate; tiny works on 2×2 patches (as
    # DiT / simple-diffusion do) so a laptop sees ~3× more images per minute.
    "tiny": UNetSpec(48, (1, 2, 2), 1, 8, patch=2),
    "small": UNetSpec(64, (1, 2, 2), 2, 8),
    "base": UNetSpec(96, (1, 2, 2, 2), 2, 16),
}


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    # Residual branches start as identity maps: stable early training.
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TimeEmbedding(nn.Module):
    """Sinusoidal features of c_noise followed by an MLP."""

    def __init__(self, dim: int, freq_dim: int = 64, scale: float = 1000.0):
        super().__init__()
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=c_noise.device) / half)
        args = (c_noise.float() * self.scale)[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=1))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)  # scale and shift
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.dropout(h))


class SelfAttention(nn.Module):
    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """F(x, c_noise[, labels]): image in, image out, same shape. With `num_classes` > 0 a class embedding is
    added to the time embedding (labels None: none added)."""

    def __init__(self, channels: int, resolution: int, spec: UNetSpec, dropout: float = 0.0, num_classes: int = 0):
        super().__init__()
        self.patch = spec.patch if resolution // spec.patch >= 8 else 1
        resolution //= self.patch
        mults = list(spec.channel_mults)
        # Larger images get extra levels so the bottleneck stays at 4-8 pixels.
        while resolution // 2 ** (len(mults) - 1) > 8:
            mults.append(mults[-1])
        widths = [spec.base_channels * m for m in mults]
        emb_dim = 4 * spec.base_channels
        self.time_embed = TimeEmbedding(emb_dim)
        self.stem = nn.Conv2d(channels * self.patch**2, widths[0], 3, padding=1)

        self.down = nn.ModuleList()
        skips, ch, res = [widths[0]], widths[0], resolution
        for level, width in enumerate(widths):
            for _ in range(spec.num_res_blocks):
                self.down.append(self._block(ch, width, emb_dim, dropout, res, spec))
                ch = width
                skips.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                res //= 2
                skips.append(ch)

        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, dropout), SelfAttention(ch), ResBlock(ch, ch, emb_dim, dropout)])

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(spec.num_res_blocks + 1):
                self.up.append(self._block(ch + skips.pop(), width, emb_dim, dropout, res, spec))
                ch = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(ch, ch, 3, padding=1))
                res *= 2
        self.head = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(),
                                  _zero(nn.Conv2d(ch, channels * self.patch**2, 3, padding=1)))
        # Made last, from zeros (no random draw): an unconditional net is built exactly as before, and a
        # conditional one starts as the unconditional one and learns what each class adds.
        self.num_classes = num_classes
        self.class_embed = nn.Embedding(num_classes, emb_dim, _weight=torch.zeros(num_classes, emb_dim)) \
            if num_classes else None

    @staticmethod
    def _block(cin, cout, emb_dim, dropout, res, spec) -> nn.Module:
        block = ResBlock(cin, cout, emb_dim, dropout)
        if res <= spec.attn_max_resolution:
            return nn.ModuleList([block, SelfAttention(cout)])
        return nn.ModuleList([block])

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_embed(c_noise)
        if labels is not None and self.class_embed is not None:
            emb = emb + self.class_embed(labels)
        h = self.stem(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        hs = [h]
        for layer in self.down:
            h = _apply(layer, h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = _apply(layer, torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        out = self.head(h)
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


def _apply(layer: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.ModuleList):  # ResBlock [+ attention]
        h = layer[0](h, emb)
        for extra in layer[1:]:
            h = extra(h)
        return h
    return layer(h)  # downsampling conv


def build_unet(model: str, channels: int, resolution: int, dropout: float = 0.0, num_classes: int = 0) -> UNet:
    return UNet(channels, resolution, PRESETS[model], dropout, num_classes)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
