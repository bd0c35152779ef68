"""Small models shipped with the core and helpers to load torchvision backbones."""
from .small_resnet import BasicBlock, SmallResNet
from .zoo import (
    SHIPPED,
    imagenet_normalize,
    load_checkpoint,
    load_pretrained,
    model_card,
    read_state_dict,
    save_checkpoint,
    torchvision_backbone,
)

__all__ = ["SmallResNet", "BasicBlock", "load_pretrained", "load_checkpoint", "save_checkpoint", "torchvision_backbone",
           "imagenet_normalize", "model_card", "SHIPPED", "read_state_dict"]
