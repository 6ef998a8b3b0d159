"""Meta-learning of functa as pure functions on explicit tensors (Dupont et al. 2022; Bauer et al. 2023, App. A).

Inner loop: latents start at zero and take `steps` SGD steps with Meta-SGD rates (one learned rate per latent
dimension, clipped) on the per-image reconstruction loss. The inner loss is the sum over the batch of
per-image means, so each image's latent update is the same at any batch size. Outer loss: the batch mean of the
per-image losses after the inner loop; its gradient reaches theta, lambda and the rates through the inner loop
(second order: the inner gradients are differentiated; first order: they are treated as constants).

Shapes: images (B, C, H, W) in [-1, 1] (the data layer's convention); targets (B, N, C) in [0, 1];
coords (N, 2) in [0, 1]; latents (B, s, s, c).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from inrkit.fields.grid import make_grid
from inrkit.metrics.image import mse_per_item, psnr_of_mse, psnr_per_item
from inrkit.models.functa import SpatialFuncta


def image_targets(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) in [-1, 1] -> (targets (B, H*W, C) in [0, 1], pixel-centre coords (H*W, 2))."""
    b, c, h, w = images.shape
    targets = (images.permute(0, 2, 3, 1).reshape(b, h * w, c) + 1) / 2
    return targets, make_grid((h, w)).reshape(h * w, 2).to(images.device)


def inner_step(model: SpatialFuncta, z: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor,
               create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One Meta-SGD step z <- z - alpha * grad_z sum_b mse_b; returns (new z (B, s, s, c), mse_b (B,) before it).

    create_graph=True keeps the step differentiable (second order); False detaches the inner gradient.
    """
    with torch.enable_grad():
        z = z if z.requires_grad else z.detach().requires_grad_()
        mse = mse_per_item(model(z, coords), targets)
        (grad,) = torch.autograd.grad(mse.sum(), z, create_graph=create_graph)
    return z - model.learning_rates() * grad, mse.detach()


def inner_loop(model: SpatialFuncta, targets: torch.Tensor, coords: torch.Tensor, steps: int = 3,
               first_order: bool = False, checkpointed: bool = False,
               differentiable: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Fit latents from zero: returns (z (B, s, s, c), [mse (B,) before step 1, ..., before step `steps`]).

    differentiable=False (encoding) detaches the result; checkpointed=True recomputes each step's
    activations during the outer backward instead of storing them (less memory, about one more forward).
    """
    z = model.zero_latents(targets.shape[0]).requires_grad_()
    create_graph = differentiable and not first_order
    history = []
    for _ in range(steps):
        if checkpointed and differentiable and torch.is_grad_enabled():
            z, mse = checkpoint(inner_step, model, z, coords, targets, create_graph, use_reentrant=False)
        else:
            z, mse = inner_step(model, z, coords, targets, create_graph)
        if not differentiable:
            z = z.detach()
        history.append(mse)
    return z, history


def outer_loss(model: SpatialFuncta, images: torch.Tensor, steps: int = 3, first_order: bool = False,
               checkpointed: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The meta-learning objective: mean over the batch of each image's MSE after the inner loop.

    Returns (scalar loss, {"psnr": (B,) after the inner loop, "psnr_start": (B,) at z = 0}).
    """
    targets, coords = image_targets(images)
    z, history = inner_loop(model, targets, coords, steps, first_order, checkpointed)
    mse = mse_per_item(model(z, coords), targets)
    start = history[0] if history else mse.detach()
    return mse.mean(), {"psnr": psnr_of_mse(mse.detach()), "psnr_start": psnr_of_mse(start)}


def encode(model: SpatialFuncta, images: torch.Tensor, steps: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) in [-1, 1] -> (latents (B, s, s, c), PSNR (B,) of the clamped reconstruction)."""
    targets, coords = image_targets(images)
    z, _ = inner_loop(model, targets, coords, steps, differentiable=False)
    with torch.no_grad():
        return z, psnr_per_item(model(z, coords).clamp(0, 1), targets)


def decode(model: SpatialFuncta, latents: torch.Tensor) -> torch.Tensor:
    """Latents (B, s, s, c) -> reconstructions (B, C, H, W) in [0, 1] on the training grid."""
    return model.render(latents).clamp(0, 1).permute(0, 3, 1, 2)
