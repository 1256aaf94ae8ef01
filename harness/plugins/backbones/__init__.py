"""Backbones the DML papers use that timm lacks, registered in timm's own model registry.

Importing this package registers, for ``timm.create_model(name, ...)``:

* ``bninception`` — BN-Inception (Ioffe & Szegedy 2015) in Cadene's ``pretrainedmodels`` layout,
  1024-d; loads Cadene's ``bn_inception-52deb4733.pth`` from a local file with strict key checks,
  and takes BGR input in [0, 255] (``pretrained_cfg["input_space"]``, ``["input_range"]``);
* ``small_cnn`` — a 4-block conv-BN-ReLU-maxpool CNN (256-d) for 8-32 px images on CPU;
* ``pixels`` — the identity backbone (raw-pixel baseline).
"""
from harness.plugins.backbone_names import EXAMPLE_BACKBONES, PAPER_BACKBONES  # noqa: F401  (named without torch)
from harness.plugins.backbones import bninception, pixels, small_cnn  # noqa: F401  (register with timm)
