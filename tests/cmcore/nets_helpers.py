"""Shared test helpers for networks."""
import torch


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter random values, so zero-initialised layers cannot hide a bug."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model
