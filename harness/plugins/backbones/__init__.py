"""Backbones the DML papers use that timm lacks, registered in timm's own model registry.

Importing this package registers, for ``timm.create_model(name, ...)``:

* ``bninception`` — BN-Inception (Ioffe & Szegedy 2015) in Cadene's ``pretrainedmodels`` layout,
  1024-d; loads Cadene's ``bn_inception-52deb4733.pth`` from a local file with strict key checks,
  and takes BGR input in [0, 255] (``pretrained_cfg["input_space"]``, ``["input_range"]``);
* ``small_cnn`` — a 4-block conv-BN-ReLU-maxpool CNN (256-d) for 8-32 px images on CPU;
* ``pixels`` — the identity backbone (raw-pixel baseline).
"""
from harness.plugins.backbones import bninception, pixels, small_cnn  # noqa: F401  (register with timm)

#: The timm names this package registers.
PAPER_BACKBONES: tuple[str, ...] = ("bninception", "small_cnn", "pixels")

#: Backbones named in help texts and ``python -m harness list``: ours plus the usual timm ones.
EXAMPLE_BACKBONES: tuple[str, ...] = PAPER_BACKBONES + ("resnet50", "vit_small_patch16_224")
