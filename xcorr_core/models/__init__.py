"""Small models shipped with the core, torchvision backbones, and users' models by name (timm, torchvision, Hugging Face, open_clip)."""
from .named import NAMED_PREFIXES, load_named_model, read_weights
from .preprocess import Preprocess, add_preprocess
from .shipped import ShippedWeights
from .small_resnet import BasicBlock, SmallResNet
from .zoo import (
    SHIPPED,
    check_model_images,
    check_state_dict,
    takes_unit_images,
    imagenet_normalize,
    load_checkpoint,
    load_pretrained,
    model_card,
    read_state_dict,
    save_checkpoint,
    save_vit_checkpoint,
    torchvision_backbone,
)
from .small_vit import VIT_ARGS, small_vit
from .loading import load_model  # after the loaders it dispatches to

__all__ = ["check_state_dict", "check_model_images", "takes_unit_images", "SmallResNet", "BasicBlock", "load_pretrained", "load_checkpoint", "save_checkpoint", "torchvision_backbone",
           "imagenet_normalize", "model_card", "SHIPPED", "read_state_dict",
           "load_named_model", "add_preprocess", "Preprocess", "read_weights", "NAMED_PREFIXES", "save_vit_checkpoint", "small_vit",
           "VIT_ARGS", "load_model", "ShippedWeights"]
