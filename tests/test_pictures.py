"""core.pictures.image_grid: where each image lands, the white gaps between them, the whole-factor zoom;
and metrics.image's PSNR, which every stage uses."""

from __future__ import annotations

import math

import pytest
import torch

from inrkit.core.pictures import image_grid, side_by_side, zoom_factor
from inrkit.metrics.image import psnr, psnr_of_mse, psnr_per_item


def numbered(n: int, h: int = 3, w: int = 2, c: int = 1) -> torch.Tensor:
    """(n, h, w, c): image k is constant (k + 1) / (n + 2), so no image equals the white (1.0) background."""
    return torch.stack([torch.full((h, w, c), (k + 1) / (n + 2)) for k in range(n)])


def test_images_are_placed_row_major_with_gaps_between_tiles_only():
    images = numbered(5)
    sheet = image_grid(images, columns=3, gap=1)
    assert sheet.shape == (2 * 3 + 1, 3 * 2 + 2, 1)  # 2 rows of 3 columns, one-pixel gaps, no outer border
    for k in range(5):
        r, q = divmod(k, 3)
        tile = sheet[r * 4 : r * 4 + 3, q * 3 : q * 3 + 2]
        assert torch.equal(tile, images[k]), k
    assert (sheet[3] == 1).all() and (sheet[:, 2] == 1).all() and (sheet[:, 5] == 1).all()  # the gaps are white
    assert (sheet[4:, 6:] == 1).all()  # the empty sixth place stays white


def test_gap_can_differ_between_rows_and_columns():
    sheet = image_grid(numbered(4, h=2, w=2), columns=2, gap=(5, 0))
    assert sheet.shape == (2 + 5 + 2, 4, 1)
    assert (sheet[2:7] == 1).all() and (sheet[:2] < 1).all() and (sheet[7:] < 1).all()


def test_more_columns_than_images_gives_one_row_as_wide_as_the_images():
    assert image_grid(numbered(2), columns=8, gap=2).shape == (3, 2 * 2 + 2, 1)
    assert image_grid(numbered(3), columns=0, gap=0).shape == (9, 2, 1)  # at least one column


def test_zoom_enlarges_by_a_whole_factor_nearest_and_leaves_the_gap_alone():
    images = torch.rand(2, 4, 4, 3)
    sheet = image_grid(images, columns=2, gap=3, zoom_to=18)  # 18 // 4 = 4
    assert sheet.shape == (16, 16 + 3 + 16, 3)
    assert torch.equal(sheet[:, :16], images[0].repeat_interleave(4, 0).repeat_interleave(4, 1))
    assert torch.equal(sheet[:, 19:], images[1].repeat_interleave(4, 0).repeat_interleave(4, 1))
    assert (sheet[:, 16:19] == 1).all()
    assert zoom_factor(4, 18) == 4 and zoom_factor(64, 18) == 1 and zoom_factor(8, None) == 1
    assert torch.equal(image_grid(images, 2, gap=3, zoom_to=3), image_grid(images, 2, gap=3))  # never shrinks


def test_one_row_matches_side_by_side():
    images = torch.rand(3, 5, 4, 3)
    assert torch.equal(image_grid(images, columns=3, gap=4), side_by_side(*images, gap=4))


def test_psnr_follows_its_definition_for_both_value_ranges():
    target = torch.zeros(2, 8, 8, 3)
    pred = target + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)  # MSE 1e-2 and 1e-4
    assert psnr_per_item(pred, target).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)
    assert psnr_per_item(pred, target, data_range=2.0).tolist() == pytest.approx(
        [20 + 20 * math.log10(2), 40 + 20 * math.log10(2)], abs=1e-4)
    mse = torch.mean(pred[:1] ** 2).item()
    assert psnr(pred[:1], target[:1], data_range=2.0) == pytest.approx(10 * math.log10(4 / mse), abs=1e-9)
    assert psnr(target, target) == pytest.approx(120.0)  # the MSE floor, not infinity


def test_psnr_of_mse_keeps_the_bits_of_minus_ten_log10_for_range_one():
    mse = torch.rand(1000) * 0.1 + 1e-6
    assert torch.equal(psnr_of_mse(mse), -10.0 * torch.log10(mse))
    assert psnr_per_item(torch.rand(3, 4, requires_grad=True), torch.rand(3, 4)).grad_fn is None
