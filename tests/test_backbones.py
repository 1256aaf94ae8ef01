"""Backbones registered by ``harness.plugins.backbones``: shapes, parameter count, local-file weight loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import harness.plugins.backbones  # noqa: F401  (registers the backbones with timm)
from harness.plugins.backbones import PAPER_BACKBONES

# Cadene's BNInception(num_classes=1000) (pretrainedmodels 0.7.4): 69 conv+BN pairs, 10,270,240
# backbone parameters plus the 1024 x 1000 + 1000 = 1,025,000 of ``last_linear``.
BNINCEPTION_PARAMS = 11_295_240
BNINCEPTION_CLASSIFIER_PARAMS = 1024 * 1000 + 1000


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Give every tensor, BN statistics included, a non-default value; return the state dict."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(torch.rand(v.shape, generator=gen) + 0.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_registered_with_timm() -> None:
    names = set(timm.list_models())
    assert {"bninception", "small_cnn"} <= set(PAPER_BACKBONES) <= names


@pytest.mark.parametrize("name, in_chans, num_features", [("bninception", 3, 1024), ("small_cnn", 1, 256)])
def test_create_model_without_classifier(name: str, in_chans: int, num_features: int) -> None:
    model = timm.create_model(name, in_chans=in_chans, num_classes=0).eval()
    assert model.num_features == num_features
    assert model.get_classifier().__class__ is torch.nn.Identity
    with torch.no_grad():
        assert model(torch.randn(2, in_chans, 64, 64)).shape == (2, num_features)


def test_bninception_shapes() -> None:
    model = timm.create_model("bninception").eval()  # 1000-way classifier, as Cadene's
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        fmap = model.forward_features(x)
        assert fmap.shape == (2, 1024, 7, 7)
        assert model.forward_head(fmap, pre_logits=True).shape == (2, 1024)
        assert model.forward_head(fmap).shape == (2, 1000)
        assert model.forward_features(torch.randn(1, 3, 96, 96)).shape == (1, 1024, 3, 3)
    model.reset_classifier(0)
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 1024)
    model.reset_classifier(5, global_pool="catavgmax")
    assert model.head_hidden_size == 2048 and model.last_linear.in_features == 2048


def test_bninception_parameter_count_and_names() -> None:
    model = timm.create_model("bninception")
    assert _n_params(model) == BNINCEPTION_PARAMS
    assert _n_params(timm.create_model("bninception", num_classes=0)) == (
        BNINCEPTION_PARAMS - BNINCEPTION_CLASSIFIER_PARAMS
    )
    keys = list(model.state_dict())
    assert len([k for k in keys if k.endswith("_bn.running_var")]) == 69
    assert len(keys) == 69 * 7 + 2  # conv w/b, BN w/b/mean/var/num_batches_tracked; last_linear w/b
    for key in ("conv1_7x7_s2.weight", "conv1_7x7_s2_bn.running_mean", "conv2_3x3_reduce.bias",
                "inception_3a_1x1.weight", "inception_3a_pool_proj_bn.weight",
                "inception_3c_double_3x3_2.weight", "inception_5b_pool_proj_bn.running_var",
                "last_linear.weight", "last_linear.bias"):
        assert key in keys
    assert "inception_3c_1x1.weight" not in keys and "inception_4e_pool_proj.weight" not in keys
    assert model.state_dict()["inception_4e_double_3x3_2.weight"].shape == (256, 256, 3, 3)


def test_bninception_input_space_in_pretrained_cfg() -> None:
    cfg = timm.create_model("bninception", num_classes=0).pretrained_cfg
    assert cfg["input_space"] == "BGR" and tuple(cfg["input_range"]) == (0, 255)
    assert tuple(cfg["mean"]) == (104, 117, 128) and tuple(cfg["std"]) == (1, 1, 1)
    assert tuple(cfg["input_size"]) == (3, 224, 224)
    assert cfg.get("url") is None  # nothing to download


@pytest.mark.parametrize("num_classes", [1000, 0])
def test_bninception_weights_file_round_trip(tmp_path: Path, num_classes: int) -> None:
    source = timm.create_model("bninception")
    saved = _randomize(source)
    path = tmp_path / "bn_inception-52deb4733.pth"
    torch.save(saved, path)
    model = timm.create_model("bninception", pretrained=True, num_classes=num_classes,
                              pretrained_cfg_overlay=dict(file=str(path)))
    loaded = model.state_dict()
    expected = {k for k in saved if num_classes or not k.startswith("last_linear.")}
    assert set(loaded) == expected
    for k in expected:
        assert torch.equal(loaded[k], saved[k]), k
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval().forward_features(x), source.eval().forward_features(x))


def test_bninception_loads_pre_0_4_checkpoint_format(tmp_path: Path) -> None:
    """Cadene's file predates ``num_batches_tracked``; the older TSN port stores BN tensors as (1, C)."""
    saved = _randomize(timm.create_model("bninception"))
    old = {k: v.unsqueeze(0) if "_bn." in k else v for k, v in saved.items() if "num_batches" not in k}
    path = tmp_path / "old.pth"
    torch.save(old, path)
    model = timm.create_model("bninception", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(model.inception_5b_3x3_bn.running_var, saved["inception_5b_3x3_bn.running_var"])


def test_bninception_rejects_mismatched_checkpoint(tmp_path: Path) -> None:
    state = timm.create_model("bninception").state_dict()
    state.pop("inception_4a_1x1.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="inception_4a_1x1.weight"):
        timm.create_model("bninception", pretrained=True, num_classes=0,
                          pretrained_cfg_overlay=dict(file=str(path)))
    with pytest.raises(RuntimeError, match="No pretrained weights"):
        timm.create_model("bninception", pretrained=True)  # no file given: never a download


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("size, spatial", [(8, 1), (28, 2), (32, 2)])
def test_small_cnn_shapes(in_chans: int, size: int, spatial: int) -> None:
    model = timm.create_model("small_cnn", in_chans=in_chans, num_classes=0).eval()
    x = torch.randn(3, in_chans, size, size)
    with torch.no_grad():
        fmap = model.forward_features(x)
        assert fmap.shape == (3, 256, spatial, spatial)
        assert model.forward_head(fmap, pre_logits=True).shape == (3, 256)
        assert model(x).shape == (3, 256)
    model.reset_classifier(10)
    with torch.no_grad():
        assert model(x).shape == (3, 10)


def test_small_cnn_weights_file_round_trip(tmp_path: Path) -> None:
    saved = _randomize(timm.create_model("small_cnn", num_classes=0))
    path = tmp_path / "small_cnn.pth"
    torch.save(saved, path)
    model = timm.create_model("small_cnn", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file=str(path)))
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name, in_chans, size", [("bninception", 3, 64), ("small_cnn", 1, 32)])
def test_feature_info_taps(name: str, in_chans: int, size: int) -> None:
    """Each ``feature_info`` module outputs (num_chs, size / reduction) maps, for forward hooks."""
    model = timm.create_model(name, in_chans=in_chans, num_classes=0).eval()
    seen: dict[str, torch.Tensor] = {}
    for info in model.feature_info:
        model.get_submodule(info["module"]).register_forward_hook(
            lambda _m, _i, out, key=info["module"]: seen.__setitem__(key, out))
    with torch.no_grad():
        model(torch.randn(1, in_chans, size, size))
    for info in model.feature_info:
        assert seen[info["module"]].shape[1:] == (info["num_chs"], size // info["reduction"],
                                                  size // info["reduction"])
