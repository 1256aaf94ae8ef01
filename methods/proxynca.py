"""ProxyNCA (Movshovitz-Attias, Toshev, Leung, Ioffe & Singh, "No Fuss Distance Metric Learning
using Proxies", ICCV 2017).

    paper:   L = −log( e^{−d(x, p_y)} / Σ_{z≠y} e^{−d(x, p_z)} )
    here:    L = −log( e^{−s·d(x, p_y)} / Σ_{z}   e^{−s·d(x, p_z)} ),   d(x, p) = ‖x/‖x‖ − p/‖p‖‖²,

averaged over the batch, one proxy per class. pytorch-metric-learning's ``ProxyNCALoss`` (used here)
differs from the paper in two ways: the positive proxy is in the denominator (a softmax over all
proxies, as in ProxyNCA++ and the widely used dichotomies/proxy-nca re-implementation), and the
squared distance of the normalised vectors is scaled by s (``softmax_scale``). The paper fixes no
scale; s = 9 is the re-implementation's proxies and embeddings scaled to norm 3 (3² = 9) and
ProxyNCA++'s temperature 1/9. Proxies train at the recipe's ``lr_method``.

Initialisation: N(0, 1) proxies, as the Proxy-Anchor code's ProxyNCA baseline (tjddus9597/
Proxy-Anchor-CVPR2020, ``losses.Proxy_NCA``) gets them from the PML of its time
(``torch.randn(C, d)``); set explicitly here. The dichotomies/proxy-nca re-implementation draws
``randn / 8`` instead. (That baseline also uses s = 32 and proxies at the backbone's lr.)
"""
from __future__ import annotations

from harness.core.hparams import LogUniform, Param
from harness.plugins.method import PMLLossMethod, register_method


@register_method("proxynca")
class ProxyNCA(PMLLossMethod):
    """ProxyNCA: softmax over negative squared distances to class proxies (Movshovitz-Attias et al., ICCV 2017)."""

    family = "proxy"
    hparams = {
        "scale": Param(9.0, LogUniform(1.0, 64.0), "s, multiplies the squared distances (inverse temperature)",
                       valid="> 0"),
    }

    def build_loss(self):
        from pytorch_metric_learning import losses
        from pytorch_metric_learning.utils.common_functions import TorchInitWrapper
        from torch import nn

        return losses.ProxyNCALoss(num_classes=self.num_classes, embedding_size=self.embedding_dim,
                                   softmax_scale=self.config["scale"],
                                   weight_init_func=TorchInitWrapper(nn.init.normal_))
