import pytest
import torch
from hypothesis import HealthCheck, settings

from xcorr_core.models import SmallResNet

settings.register_profile("xcorr", deadline=None, derandomize=True, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("xcorr")
torch.set_num_threads(2)


@pytest.fixture
def tiny():
    """A tiny ProtoKNN: SmallResNet widths 8-16, 32 px images -> a 2 x 2 map, D = 8, M = 12."""
    from xcorr_protoknn import ProtoKNNNet

    torch.manual_seed(0)
    return ProtoKNNNet(SmallResNet(4, widths=(8, 8, 16, 16)), "layer4", 16, dim=8, prototypes=12, prototype_steps=50, seed=0)


@pytest.fixture
def tiny_data():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(4)  # 4 classes x 4 images
    images = (torch.rand(16, 3, 32, 32, generator=g) * 0.5 + labels[:, None, None, None] * 0.12).clamp(0, 1)
    return images, labels
