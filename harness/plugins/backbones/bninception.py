"""BN-Inception (Inception-v2 with batch normalization), registered in timm as ``bninception``.

Reference: S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift", ICML 2015 (arXiv:1502.03167), appendix. It is the backbone of
most deep metric learning baselines, and of the JRD paper (Chu et al., ICML 2020), which take it from
Cadene's ``pretrainedmodels`` package (``pretrainedmodels/models/bninception.py``, ImageNet weights
``bn_inception-52deb4733.pth``, converted from Caffe by Y. Xiong).

Module and parameter names match Cadene's ``BNInception`` exactly (``conv1_7x7_s2.weight``,
``conv1_7x7_s2_bn.running_mean``, ``inception_3a_1x1.weight``, ..., ``last_linear.weight``), so that
checkpoint loads with strict key matching. The architecture is built from :data:`_BLOCKS`, one row
per inception block, rather than written out layer by layer.

Input convention of the Cadene weights (also in ``model.pretrained_cfg``): **BGR** channel order,
pixel values in **[0, 255]**, minus mean ``(104, 117, 128)`` (B, G, R), std ``(1, 1, 1)``; i.e.
``x = 255 * rgb01[[2, 1, 0]] - mean``. timm's own ``create_transform`` assumes RGB in [0, 1] and
cannot express this; ``harness.plugins.transforms.build_transform`` reads ``input_space``/``input_range``.

Loading a local Cadene weights file (no download ever happens; the cfg has no URL)::

    timm.create_model("bninception", pretrained=True, num_classes=0,
                      pretrained_cfg_overlay=dict(file="/path/bn_inception-52deb4733.pth"))
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

__all__ = ["BNInception", "bninception", "checkpoint_filter_fn", "BNINCEPTION_INPUT"]

#: Input space of the Cadene/Caffe weights; merged into ``model.pretrained_cfg``.
BNINCEPTION_INPUT: dict[str, Any] = dict(
    input_space="BGR", input_range=(0, 255), mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0)
)


class _Block(NamedTuple):
    """One inception block; a width of 0 drops that branch.

    Branches (Cadene names, after the ``inception_<name>_`` prefix): ``1x1``; ``3x3_reduce -> 3x3``;
    ``double_3x3_reduce -> double_3x3_1 -> double_3x3_2``; pool (-> ``pool_proj``). Reduction blocks
    (``stride=2``) have no 1x1 branch, stride the last conv of each 3x3 chain, and pass a 3x3/2 max
    pool of the input through without projection.
    """

    name: str
    c1x1: int
    c3x3_reduce: int
    c3x3: int
    cdbl_reduce: int
    cdbl: int
    pool: str  # "avg" or "max" (3x3, stride 1, pad 1); ignored for stride 2 (3x3/2 max pool)
    pool_proj: int
    stride: int = 1


# The Inception variant of Ioffe & Szegedy (2015, appendix) as in Cadene's port; output widths in comments.
_BLOCKS: tuple[_Block, ...] = (
    _Block("3a", 64, 64, 64, 64, 96, "avg", 32),  # 256 @ 28x28
    _Block("3b", 64, 64, 96, 64, 96, "avg", 64),  # 320
    _Block("3c", 0, 128, 160, 64, 96, "max", 0, stride=2),  # 576 @ 14x14
    _Block("4a", 224, 64, 96, 96, 128, "avg", 128),  # 576
    _Block("4b", 192, 96, 128, 96, 128, "avg", 128),  # 576
    _Block("4c", 160, 128, 160, 128, 160, "avg", 128),  # 608
    _Block("4d", 96, 128, 192, 160, 192, "avg", 128),  # 608
    _Block("4e", 0, 128, 192, 192, 256, "max", 0, stride=2),  # 1056 @ 7x7
    _Block("5a", 352, 192, 320, 160, 224, "avg", 128),  # 1024
    _Block("5b", 352, 192, 320, 192, 224, "max", 128),  # 1024
)

# (name, out_chs, kernel, stride); a 3x3/2 max pool follows the 1st and the 3rd conv
_STEM: tuple[tuple[str, int, int, int], ...] = (
    ("conv1_7x7_s2", 64, 7, 2),
    ("conv2_3x3_reduce", 64, 1, 1),
    ("conv2_3x3", 192, 3, 1),
)


class BNInception(nn.Module):
    """BN-Inception with timm's model interface; ``forward_features`` gives ``(N, 1024, H/32, W/32)``.

    Every conv (with bias) is followed by ``<name>_bn`` (BatchNorm2d) and ReLU, as in Cadene's port.
    Spatial sizes must stay even at the two reduction blocks (e.g. 224 -> 7x7, 96 -> 3x3, 64 -> 2x2),
    as in the reference model.
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, global_pool: str = "avg"):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        chs = in_chans
        for name, out_chs, k, s in _STEM:
            self._add_conv(name, chs, out_chs, k, s)
            chs = out_chs
        # per block: (output tap, pool kind, conv-name chains, pool projection conv or None)
        self._blocks: list[tuple[str, str, tuple[tuple[str, ...], ...], str | None]] = []
        for b in _BLOCKS:
            chs = self._add_block(b, chs)
        self.num_features = chs  # 1024
        self.feature_info = [  # last block at each stride (for forward hooks on the taps)
            dict(num_chs=320, reduction=8, module="inception_3b_output"),
            dict(num_chs=608, reduction=16, module="inception_4d_output"),
            dict(num_chs=1024, reduction=32, module="inception_5b_output"),
        ]
        self.global_pool, self.last_linear = create_classifier(chs, num_classes, pool_type=global_pool)
        self.head_hidden_size = chs * self.global_pool.feat_mult()

    def _add_conv(self, name: str, in_chs: int, out_chs: int, kernel: int, stride: int) -> None:
        setattr(self, name, nn.Conv2d(in_chs, out_chs, kernel, stride, padding=kernel // 2))
        setattr(self, name + "_bn", nn.BatchNorm2d(out_chs))

    def _add_block(self, b: _Block, in_chs: int) -> int:
        """Create the convs of block ``b`` and record its branches; return its output width."""
        p = f"inception_{b.name}_"
        chains: list[tuple[tuple[str, int, int, int], ...]] = []
        if b.c1x1:
            chains.append(((p + "1x1", b.c1x1, 1, 1),))
        chains.append(((p + "3x3_reduce", b.c3x3_reduce, 1, 1), (p + "3x3", b.c3x3, 3, b.stride)))
        chains.append((
            (p + "double_3x3_reduce", b.cdbl_reduce, 1, 1),
            (p + "double_3x3_1", b.cdbl, 3, 1),
            (p + "double_3x3_2", b.cdbl, 3, b.stride),
        ))
        out_chs = 0
        for chain in chains:
            chs = in_chs
            for name, width, k, s in chain:
                self._add_conv(name, chs, width, k, s)
                chs = width
            out_chs += chs
        proj = p + "pool_proj" if b.pool_proj else None
        if proj:
            self._add_conv(proj, in_chs, b.pool_proj, 1, 1)
        out_chs += b.pool_proj or in_chs  # an unprojected pool branch keeps the input width
        setattr(self, p + "output", nn.Identity())  # parameter-free tap on the concatenated output
        names = tuple(tuple(c[0] for c in chain) for chain in chains)
        self._blocks.append((p + "output", b.pool if b.stride == 1 else "max_s2", names, proj))
        return out_chs

    def _conv_bn_relu(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)), inplace=True)

    def _block(
        self, tap: str, pool: str, chains: tuple[tuple[str, ...], ...], proj: str | None, x: torch.Tensor
    ) -> torch.Tensor:
        outs = []
        for chain in chains:
            y = x
            for name in chain:
                y = self._conv_bn_relu(name, y)
            outs.append(y)
        if pool == "avg":
            y = F.avg_pool2d(x, 3, 1, 1, ceil_mode=True, count_include_pad=True)
        elif pool == "max":
            y = F.max_pool2d(x, 3, 1, 1, ceil_mode=True)
        else:  # reduction block
            y = F.max_pool2d(x, 3, 2, ceil_mode=True)
        outs.append(self._conv_bn_relu(proj, y) if proj else y)
        return getattr(self, tap)(torch.cat(outs, 1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv_bn_relu("conv1_7x7_s2", x)
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        x = self._conv_bn_relu("conv2_3x3", self._conv_bn_relu("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for block in self._blocks:
            x = self._block(*block, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pool (Cadene: 7x7 average pool, equal to global average at 224) then classifier."""
        x = self.global_pool(x)
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.last_linear

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.last_linear = create_classifier(
            self.num_features, num_classes, pool_type=global_pool
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: BNInception) -> dict[str, torch.Tensor]:
    """Check a Cadene-format state dict against ``model`` key by key before timm loads it.

    timm loads with ``strict=False`` whenever it drops the classifier (``num_classes`` differs from
    1000), so strictness of the backbone keys is enforced here: any missing or unexpected key other
    than ``last_linear.*`` raises. ``num_batches_tracked`` may be absent (pre-0.4.1 checkpoints, such
    as Cadene's); ``(1, C)`` BatchNorm tensors of the older TSN port (``bn_inception-9f5701afb96c8044``)
    are squeezed to ``(C,)``.
    """
    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k in own and v.ndim == 2 and v.shape[0] == 1 and own[k].ndim == 1:
            v = v.squeeze(0)
        out[k] = v

    def backbone(keys: Any) -> set[str]:
        return {k for k in keys if not k.startswith("last_linear.") and not k.endswith("num_batches_tracked")}

    missing, unexpected = backbone(own) - backbone(out), backbone(out) - backbone(own)
    if missing or unexpected:
        raise RuntimeError(
            f"BN-Inception checkpoint does not match the model: missing {sorted(missing)[:5]} "
            f"({len(missing)}), unexpected {sorted(unexpected)[:5]} ({len(unexpected)})"
        )
    return out


default_cfgs = generate_default_cfgs({
    "bninception": dict(
        url=None,  # never downloaded: pass pretrained_cfg_overlay=dict(file=PATH)
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=(7, 7),
        crop_pct=0.875,  # 256 -> 224 center crop, as in the DML papers' eval pipelines
        interpolation="bilinear",
        mean=BNINCEPTION_INPUT["mean"],
        std=BNINCEPTION_INPUT["std"],
        first_conv="conv1_7x7_s2",
        classifier="last_linear",
        origin_url="https://github.com/Cadene/pretrained-models.pytorch",
        paper_ids="arXiv:1502.03167",
        paper_name="Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
                   "Covariate Shift",
        notes=(
            "Cadene weights bn_inception-52deb4733.pth expect BGR input in [0, 255]: "
            "x = 255 * rgb[[2, 1, 0]] - (104, 117, 128); mean/std here are in that space, "
            "see pretrained_cfg['input_space'] and ['input_range'].",
        ),
    ),
})


@register_model
def bninception(pretrained: bool = False, **kwargs: Any) -> BNInception:
    """BN-Inception (Ioffe & Szegedy 2015), Cadene's ``pretrainedmodels`` layout; 1024-d features."""
    model = build_model_with_cfg(
        BNInception, "bninception", pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs
    )
    model.pretrained_cfg.update(input_space=BNINCEPTION_INPUT["input_space"],
                                input_range=BNINCEPTION_INPUT["input_range"])
    return model
