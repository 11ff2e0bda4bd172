"""Small helpers shared by several test files."""
from torch import nn


def lively(module: nn.Module) -> nn.Module:
    """He-initialised convolutions, so random weights keep activations at a useful scale and give
    a varied, mostly unclipped image."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.uniform_(layer.bias, -0.1, 0.1)
    return module
