import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

settings.register_profile("xcorr", deadline=None, derandomize=True, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("xcorr")
torch.set_num_threads(2)


class TinyCNN(nn.Module):
    """conv -> softplus -> conv ('layer') -> conv1x1 -> softplus -> GAP -> linear: the map's gradient
    depends on the activations (so double backprop is exercised)."""

    def __init__(self, classes: int = 3, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.act = nn.Softplus()
        self.layer = nn.Conv2d(width, width, 3, padding=1)
        self.mix = nn.Conv2d(width, width, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.layer(self.act(self.stem(x)))
        return self.fc(self.pool(self.act(self.mix(a))).flatten(1))


class FlatHead(nn.Module):
    """conv ('layer', ReLU after) -> flatten -> linear: y_t = <W_t, A> + b_t, so dy_t/dA = W_t exactly."""

    def __init__(self, classes: int = 3, width: int = 4, side: int = 6) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(width * side * side, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer(x).flatten(1))


@pytest.fixture
def tiny() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN()


@pytest.fixture
def flat() -> FlatHead:
    torch.manual_seed(0)
    return FlatHead()
