"""The initial weights the papers' recipes fine-tune, in words (a recipe's ``pretrained_weights``): weights
cannot be downloaded here, so a recipe names them and ``--pretrained PATH`` gives the file."""
from __future__ import annotations

#: Cadene's ``pretrainedmodels`` BN-Inception (the JRD, Proxy-Anchor and SoftTriple code load it)
BN_INCEPTION_IMAGENET = "ImageNet-1k BN-Inception, Cadene pretrainedmodels bn_inception-52deb4733.pth"
#: torchvision's ImageNet ResNet-50 (the NIR, Metrix and intra-batch code load it)
RESNET50_IMAGENET = "ImageNet-1k ResNet-50, torchvision resnet50"
