"""JRD: Distance Metric Learning with Joint Representation Diversification (Chu, Lin, Wang, Wang,
Yu, Gao & Tong, ICML 2020), its paper recipe, and the ablations it compares against.

    L_JRD = L_AMSoftmax + α · L_JRS,
    L_JRS = mean over ordered pairs (i, j) with y_i ≠ y_j of  k⁻(x_i⁻, x_j⁻) · k(x_i, x_j) · k⁺(x_i⁺, x_j⁺),

on three representations of each sample:

* X⁻ — the backbone's last feature map, global-average-pooled, post-ReLU, not normalised
  (``outputs.pooled``; the code's ``feat``, 1024-d for BN-Inception);
* X  — the embedding, Linear then L2-normalised (``outputs.embedding``; the code's ``emb``);
* X⁺ — the C cosine similarities between the embedding and the column-normalised AMSoftmax class
  weights, before scale and margin (the code's ``simClass = emb @ normalize(fc, dim=0)``), computed
  from the very weights of the AMSoftmax term (pytorch-metric-learning's ``CosFaceLoss.get_cosine``).

Kernels (code: ``args.py`` ``--kernelNums 3 3 1 --kernelMuls 2 2 2 --sigmas None None None``):
mixtures of K Gaussians, k(x,x') = (1/K) Σ_k exp(−‖x−x'‖²/bw_k), K = 3 for X⁻ and X and K = 1 for
X⁺, bw_k = σ · m · mul^(k−⌊K/2⌋), m the batch's mean off-diagonal squared distance (detached), mul = 2,
σ = 1. The AMSoftmax term is :class:`methods.amsoftmax.AMSoftmax` itself (s = 20, m = 0.1), α = 1,
with the code's ``CosineSoftmax`` initialisation: its (d, C) class weights ``kaiming_uniform_(a=√5)``,
U(±1/√C) entries; the embedding head is PyTorch's default ``nn.Linear`` (the code's ``embedding``).
The regulariser's pieces live in :mod:`methods.jrd_kernels`.

Registered methods (all share the hyperparameters below, the ``jrd`` recipe and the AMSoftmax term; their
``baseline`` is ``amsoftmax``: ``scale`` and ``margin`` are AM-Softmax's, ``alpha`` (the main one), ``sigma``,
``kernel``, ``mul``, ``bandwidths``, ``degree`` (and ``jrd_intra``'s ``beta``) their own (``own_hparams``), so
a ``nested`` benchmark searches only these at AM-Softmax's chosen margin and scale; AM-Softmax's paper recipe
is the same ``jrd`` recipe:
:data:`methods.amsoftmax.JRD_CODE_RECIPE`, with the code's schedule as milestones, decay at the start of
0-based epochs 19 and 39, ``train.py:86-87, 198-201``):

* ``jrd``       — the above; ``kernel`` selects Gaussian (default), Laplace, polynomial or MGF;
* ``mrd``       — marginal ablation: Σ_l mean_{y_i≠y_j} k^l(x_i^l, x_j^l), the per-layer penalties summed;
* ``jrd_c``     — concatenation: one kernel (K = 3) on [x⁻ ‖ x ‖ x⁺], its data-driven bandwidth from the
  concatenation's distances (for the unscaled MGF this equals ``jrd``: exp of a sum of inner products is their product);
* ``jrd_pool``  — pooling: one kernel (K = 3) on z = (1/3) Σ_l AvgPool_d(x^l), every layer average-pooled
  along its feature axis to the common width d = min(dim X⁻, dim X, C), then averaged element-wise;
* ``jmmd``      — joint MMD instead of JRS: the regulariser is −Σ_{I≠J} n^I n^J JMMD²(I,J) / Σ_{I≠J} n^I n^J
  (maximising the product-kernel MMD between class-conditional joint distributions; its Ŝ(I,I) terms
  reward intra-class similarity), see :func:`methods.jrd_kernels.joint_mmd`;
* ``jrd_intra`` — L_JRS + β · mean over same-class pairs of the joint-RKHS distance K_ii + K_jj − 2K_ij:
  the explicit intra-class penalty the paper argues against.

Provenance: ``jrd`` follows the code (``loss.py``, ``args.py``) line by line; the paper's text past its
introduction was not at hand when this was written, so ``mrd``, ``jrd_c``, ``jrd_pool``, ``jmmd`` and
``jrd_intra`` are defined here from their one-line descriptions (marginal, concatenation, pooling,
joint MMD, explicit intra-class penalty), and the per-kernel α defaults and polynomial degree p = 2
are not checked against the paper's tables.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.hparams import Choice, IntUniform, LogUniform, Param
from harness.plugins.method import register_method
from methods.amsoftmax import JRD_CODE_RECIPE, AMSoftmax
from methods.jrd_kernels import (KERNELS, KernelSpec, inter_class_similarity, intra_class_distance, joint_kernel,
                                 joint_mmd, marginal_kernel, pool_representations)

if TYPE_CHECKING:
    import torch

    from harness.plugins.models import ModelOutput

#: The paper's regulariser weight per kernel (its kernel table: α = 1 for Gaussian and Laplace,
#: α = 1e-3 for the unnormalised polynomial and MGF kernels); used when ``alpha`` is not given.
DEFAULT_ALPHA: dict[str, float] = {"gaussian": 1.0, "laplace": 1.0, "polynomial": 1e-3, "mgf": 1e-3}


@register_method("jrd")
class JRD(AMSoftmax):
    """JRD: AMSoftmax + α · joint (product-kernel) similarity of X⁻, X, X⁺ across classes (Chu et al., ICML 2020)."""

    family = "JRD variants"
    hparams = {
        **AMSoftmax.hparams,
        "alpha": Param(1.0, LogUniform(1e-3, 10.0),
                       "α, regulariser weight; when not given 1 for gaussian/laplace, 1e-3 for polynomial/mgf",
                       valid=">= 0"),
        "kernel": Param("gaussian", Choice(KERNELS), "kernel of every layer"),
        "sigma": Param(1.0, LogUniform(0.1, 10.0), "σ, scale multiplying every bandwidth (gaussian/laplace/mgf)",
                       valid="> 0"),
        "mul": Param(2.0, LogUniform(1.0, 4.0), "ratio between consecutive bandwidths of a mixture", valid="> 0"),
        "bandwidths": Param(None, None, "per-kernel fixed bandwidths: None = data-driven, a number = fixed "
                                        "base, a tuple = the K σ_k²; e.g. (None, None, 0.5)",
                            valid="> 0", kind=(type(None), float, tuple)),
        "degree": Param(2, IntUniform(1, 4), "p of the polynomial kernel", valid=">= 1"),
    }
    taps = ("embedding", "pooled")
    paper_recipe = JRD_CODE_RECIPE  # inherited from AMSoftmax; stated: the recipe is this code's
    baseline = "amsoftmax"
    own_hparams = ("alpha", "sigma", "kernel", "mul", "bandwidths", "degree")
    baseline_at_zero = True  # L = L_AMSoftmax exactly at α = 0
    #: Mixture sizes K of the kernels the regulariser uses (the code's ``--kernelNums``: X⁻, X, X⁺).
    kernel_nums: ClassVar[tuple[int, ...]] = (3, 3, 1)

    def __init__(self, num_classes: int, embedding_dim: int, feature_dim: int, **hparams: Any):
        super().__init__(num_classes, embedding_dim, feature_dim, **hparams)
        self.kernels = self.build_kernels()

    @classmethod
    def derived_defaults(cls, values: dict[str, Any], given: set[str]) -> dict[str, Any]:
        """α's default is the paper's for the kernel (:data:`DEFAULT_ALPHA`) unless α is given (an unknown
        kernel is left to :meth:`build_kernels`, which names the valid ones)."""
        if "alpha" in given or values["kernel"] not in DEFAULT_ALPHA:
            return {}
        return {"alpha": DEFAULT_ALPHA[values["kernel"]]}

    def build_kernels(self) -> tuple[KernelSpec, ...]:
        """One :class:`KernelSpec` per entry of ``kernel_nums``, with its ``bandwidths`` entry."""
        bandwidths = self.config["bandwidths"] or (None,) * len(self.kernel_nums)
        if len(bandwidths) != len(self.kernel_nums):
            raise ValueError(f"method {self.name!r} has {len(self.kernel_nums)} kernel(s); "
                             f"bandwidths={bandwidths!r} gives {len(bandwidths)}")
        return tuple(KernelSpec(kind=self.config["kernel"], num_kernels=k, mul=self.config["mul"],
                                scale=self.config["sigma"], bandwidth=b, degree=self.config["degree"])
                     for k, b in zip(self.kernel_nums, bandwidths))

    def representations(self, outputs: ModelOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(X⁻, X, X⁺) in float32; X⁺ = cos(embedding, class weights) from the AMSoftmax term's weights."""
        embedding = outputs["embedding"].float()
        return outputs["pooled"].float(), embedding, self.criterion.get_cosine(embedding)

    def combined_kernel(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The (N, N) kernel the regulariser reduces: here Π_l k^l (joint)."""
        return joint_kernel([kernel(x) for kernel, x in zip(self.kernels, layers)])

    def reduce(self, kernel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The regulariser from the combined kernel: here L_JRS, the mean over different-class pairs."""
        return inter_class_similarity(kernel, labels)

    def regulariser(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """The regulariser (without α) of one batch, in float32 with autocast off: in bf16 the
        ‖a‖² + ‖b‖² − 2⟨a, b⟩ distances of the unnormalised X⁻ would be mostly rounding error."""
        import torch

        with torch.autocast(device_type=labels.device.type, enabled=False):
            return self.reduce(self.combined_kernel(self.representations(outputs)), labels)

    def loss(self, outputs: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """L_AMSoftmax + α · regulariser; exactly the AMSoftmax loss when α = 0."""
        amsoftmax = super().loss(outputs, labels)
        alpha = self.config["alpha"]
        return amsoftmax if alpha == 0 else amsoftmax + alpha * self.regulariser(outputs, labels)


@register_method("mrd")
class MRD(JRD):
    """MRD: AMSoftmax + α · Σ_l inter-class similarity of each layer alone (JRD's marginal ablation)."""

    def combined_kernel(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return marginal_kernel([kernel(x) for kernel, x in zip(self.kernels, layers)])


@register_method("jrd_c")
class JRDConcat(JRD):
    """JRD-C: AMSoftmax + α · inter-class similarity under one kernel on the concatenation [X⁻ ‖ X ‖ X⁺]."""

    kernel_nums = (3,)

    def combined_kernel(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
        import torch

        return self.kernels[0](torch.cat(layers, dim=1))


@register_method("jrd_pool")
class JRDPooling(JRD):
    """JRD-Pooling: AMSoftmax + α · inter-class similarity under one kernel on X⁻, X, X⁺ pooled to one vector."""

    kernel_nums = (3,)

    def combined_kernel(self, layers: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.kernels[0](pool_representations(layers))


@register_method("jmmd")
class JMMD(JRD):
    """JMMD: AMSoftmax − α · mean joint MMD² between classes (product kernel of X⁻, X, X⁺)."""

    def reduce(self, kernel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -joint_mmd(kernel, labels)


@register_method("jrd_intra")
class JRDIntra(JRD):
    """JRD + β · explicit intra-class penalty (mean joint-RKHS distance of same-class pairs)."""

    hparams = {
        **JRD.hparams,
        "beta": Param(1.0, LogUniform(1e-3, 10.0), "β, weight of the intra-class distance penalty", valid=">= 0"),
    }
    own_hparams = (*JRD.own_hparams, "beta")

    def reduce(self, kernel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return inter_class_similarity(kernel, labels) + self.config["beta"] * intra_class_distance(kernel, labels)
