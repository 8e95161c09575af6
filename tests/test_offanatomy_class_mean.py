"""The class-averaged outside-anatomy statistic: reference values, ties, and what averaging cancels."""

import pytest
import torch

from harness.checks.offanatomy import STATISTICS, mean_map_density, region_density


def frame(n: int, size: int = 32, width: int = 3) -> torch.Tensor:
    mask = torch.ones(n, 1, size, size, dtype=torch.bool)
    mask[..., width:size - width, width:size - width] = False
    return mask


def test_a_constant_map_scores_exactly_one_whatever_the_sort_lists_first():
    maps, region = torch.full((5, 1, 32, 32), 0.3), frame(5)
    assert mean_map_density(maps, region, 0.02).item() == pytest.approx(1.0, abs=1e-12)
    # a plain topk would take the first rows (all border): 1 / area fraction
    assert 1 / region.double().mean().item() > 2


def test_a_fixed_border_hotspot_adds_up_and_scores_the_inverse_area():
    maps = torch.rand(40, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5
    maps[..., 0:2, 10:20] = 1.0  # 20 pixels, inside the frame, on every image
    region = frame(40)
    area = region.double().mean().item()
    assert mean_map_density(maps, region, 20 / 1024).item() == pytest.approx(1 / area)


def test_noise_off_the_region_on_every_image_averages_out_where_the_per_image_reading_does_not():
    """Each map's hottest pixels fall on a different border place: 'top' flags it, the class mean does not."""
    g = torch.Generator().manual_seed(1)
    n, size = 64, 32
    maps = torch.zeros(n, 1, size, size)
    maps[..., 12:20, 12:20] = 0.6  # the lesion, in the middle of every image
    maps += 0.05 * torch.rand(maps.shape, generator=g)
    border = frame(n).flatten(1).nonzero()
    for i in range(n):  # 20 random border pixels per image, hotter than the lesion
        cols = border[border[:, 0] == i, 1]
        pick = cols[torch.randint(len(cols), (20,), generator=g)]
        maps[i].view(-1)[pick] = 1.0
    region = frame(n)
    per_image = region_density(maps, region, "top", 20 / 1024).mean().item()
    assert per_image > 1.5
    assert mean_map_density(maps, region, 20 / 1024).item() < 0.1


def test_the_region_may_move_from_image_to_image():
    """A pixel counts by how often it lies in the region: half the images -> half the weight."""
    maps = torch.zeros(2, 1, 4, 4)
    maps[..., 0, 0] = 1.0
    region = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    region[0, 0, 0, 0] = True
    region[:, 0, 3, :] = True  # area: (1 + 4 + 4) / 32
    expected = 0.5 / (9 / 32)
    assert mean_map_density(maps, region, 1 / 16).item() == pytest.approx(expected)


def test_per_image_statistics_refuse_the_class_mean():
    assert "class_mean_top" in STATISTICS
    with pytest.raises(ValueError, match="mass, top"):
        region_density(torch.rand(2, 1, 8, 8), frame(2, 8, 1), "class_mean_top")
