"""Small shared helpers for the tests."""

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for images with data range 1."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()
