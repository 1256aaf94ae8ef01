"""Training recipes: named, recorded sets of everything about training that is not the loss.

One shared recipe per data regime makes a comparison fair; a method may ship its paper's recipe
(``Method.paper_recipe``) as a named option. Every trial record stores the recipe's name, its
fields and a short hash of the fields, so trials run under different recipes never average together.

Every rule on a recipe's values lives here: each field's type and valid values (:data:`FIELD_RULES`,
checked whenever a recipe is built), what a user may set (:meth:`Recipe.check_overrides`), the sampler a
method trains with (:meth:`Recipe.sampler_for`) and whether its batches can be drawn from a training
split's classes (:meth:`Recipe.check_batches`). The one resolution step
(:func:`harness.experiment.check_recipe`) applies them before any trial starts; the engine only uses them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from harness.core.hparams import Choice, Param
from harness.core.registry import Registry

#: how a training loader draws its batches; a recipe's ``sampler`` may also be ``method``: the method's own
BATCH_SAMPLERS = ("random", "m_per_class")
SAMPLERS = ("method", *BATCH_SAMPLERS)
AUGMENTATIONS = ("rrc_flip", "rrc_flip_erase", "flip", "none")
DECODERS = ("pil", "torchvision", "nvjpeg")
POOLINGS = ("avg", "max", "avgmax")
HEAD_INITS = ("default", "kaiming_normal_fan_out")


@dataclass(frozen=True)
class Recipe:
    """Epochs, batches, images, architecture around the backbone, optimiser and schedule of a training run.

    Everything that is not a method's contribution lives here, so every method run under one recipe
    shares it; a method's paper recipe carries its authors' choices.

    ``sampler="method"`` uses the sampler each method declares (m-per-class for pair losses);
    ``augmentation``: see :mod:`harness.plugins.transforms` (``rrc_flip_erase`` adds RandomErasing);
    ``pooling`` of the backbone's last feature map: ``avg`` (GAP), ``max`` (GMP) or ``avgmax`` (their
    sum, GAP + GMP); ``head_init`` of the linear embedding head: ``default`` (PyTorch's ``nn.Linear``,
    Kaiming-uniform a = √5) or ``kaiming_normal_fan_out`` (Kaiming-normal fan-out weights, zero bias);
    ``lr_decay_epochs`` is a step schedule (×``lr_decay_gamma`` every that many epochs; 0 = constant);
    ``lr_milestones``, when given, replaces it with the authors' schedule as data: the rate is multiplied
    by ``lr_decay_gamma`` at the start of each listed 0-based epoch (the JRD code's
    ``(epoch + 1) % 20 == 0`` decay of 50 epochs is ``(19, 39)``: 19, 20 and 11 epochs at 1, 0.1, 0.01);
    ``freeze_bn`` keeps the backbone's BatchNorm statistics fixed; ``freeze_bn_affine`` also keeps
    their affine parameters (γ, β) fixed, during and after warm-up; ``warmup_epochs`` trains with the
    backbone frozen; ``grad_clip_value`` clips every gradient entry to ±that value before each step
    (``clip_grad_value_``; 0 = off); ``amp`` uses bf16 autocast and channels-last tensors on CUDA only;
    ``decoder`` reads images with PIL or with ``torchvision.io`` (then augments uint8 tensors), or
    (``nvjpeg``) has the loader read the files and the GPU decode, crop and flip them in batches
    (``torchvision.io.decode_jpeg`` on CUDA, the same ``transforms.v2`` steps; on a machine without
    CUDA it falls back to ``torchvision``, and the trial record says so);
    ``torch_compile`` compiles the model with ``torch.compile`` (any device; off by default).
    ``backbone`` and ``pretrained_weights`` pin what a paper recipe's authors trained: the backbone's registered
    name and the initial weights in words (empty: not pinned, the run's ``--backbone`` or the dataset's default,
    and ``--pretrained``); under ``--recipe paper`` a pinned recipe runs only with those weights given
    (``--pretrained``) or with ``--from-scratch``, which renames the recipe ``<name>-from-scratch`` so every row
    says so. ``drop_last`` drops each epoch's last partial batch of a plainly shuffled loader (m-per-class
    batches are always whole); ``False`` keeps it, as the JRD code's ``DataLoader`` does.
    ``method_hparams`` maps a method name to the hyperparameters its authors used with this recipe
    (e.g. the Metrix code's MS values for ``ms`` and ``metrix_ms`` alike); they apply above a method's
    defaults and below the user's ``--hparam``.
    """

    name: str
    epochs: int = 50
    batch_size: int = 112
    sampler: str = "method"
    samples_per_class: int = 4
    image_size: int = 224
    resize_size: int = 256
    augmentation: str = "rrc_flip"
    pooling: str = "avg"
    head_init: str = "default"
    optimizer: str = "adamw"
    lr_backbone: float = 1e-4
    lr_head: float = 1e-4
    lr_method: float = 1e-2
    weight_decay: float = 1e-4
    adam_eps: float = 1e-8
    lr_decay_epochs: int = 20
    lr_decay_gamma: float = 0.1
    lr_milestones: tuple[int, ...] = ()
    freeze_bn: bool = True
    freeze_bn_affine: bool = False
    warmup_epochs: int = 0
    grad_clip_value: float = 0.0
    amp: bool = True
    eval_batch_size: int = 256
    decoder: str = "pil"
    torch_compile: bool = False
    backbone: str = ""
    pretrained_weights: str = ""
    drop_last: bool = True
    method_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse (``ValueError`` naming the recipe and field) a field of the wrong type or out of its
        :data:`FIELD_RULES`, and ``lr_milestones`` that do not increase."""
        for name, rule in FIELD_RULES.items():
            problem = rule.problem(getattr(self, name))
            if problem:
                raise ValueError(f"recipe {self.name!r}: {name}: {problem}")
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))  # a record's JSON list
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)):
            raise ValueError(f"recipe {self.name!r}: lr_milestones must be increasing epochs >= 1, "
                             f"got {self.lr_milestones!r}")

    @staticmethod
    def check_overrides(changes: dict[str, Any]) -> None:
        """Refuse (``ValueError``, one line naming the field) what a user may not set: an unknown field, a
        value of the wrong type or out of range; ``epochs`` at least 1 (0 is how the harness marks a
        method that does not train)."""
        _check_names(changes)
        for name, value in changes.items():
            rule = USER_EPOCHS if name == "epochs" else FIELD_RULES[name]
            rule.check(f"recipe field {name}", value)

    def sampler_for(self, method_sampler: str) -> str:
        """The batch sampler a method that declares ``method_sampler`` trains with under this recipe (one of
        :data:`BATCH_SAMPLERS`; ``ValueError`` for another)."""
        sampler = method_sampler if self.sampler == "method" else self.sampler
        if sampler not in BATCH_SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(BATCH_SAMPLERS)}")
        return sampler

    def check_batches(self, method: str, method_sampler: str, classes: int) -> None:
        """Raise ``ValueError`` naming ``method`` unless its batches can be drawn from ``classes`` training
        classes: m-per-class batches hold at least two classes of ``samples_per_class`` each (else a batch
        has no negatives) and the split has as many classes as a batch holds."""
        if self.sampler_for(method_sampler) != "m_per_class":
            return
        m, batch = self.samples_per_class, self.batch_size
        if batch < 2 * m:
            raise ValueError(f"{method}: batch_size {batch} holds fewer than two classes of samples_per_class {m} "
                             f"(m-per-class batches need batch_size >= {2 * m}, or a smaller samples_per_class)")
        if classes * m < batch - batch % m:
            raise ValueError(f"{method}: m-per-class batches of {batch - batch % m} need {batch // m} classes, "
                             f"the training split has {classes}")

    @property
    def hash(self) -> str:
        """Eight hex digits identifying the fields (not the name): equal hashes mean equal training."""
        payload = json.dumps({k: v for k, v in self.to_dict().items() if k != "name"}, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:8]

    def override(self, **changes: Any) -> "Recipe":
        """A copy with some fields changed (e.g. ``epochs=5`` from the CLI)."""
        _check_names(changes)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields by name; those of :data:`LATER_FIELDS` only away from their defaults, so a recipe that
        leaves them keeps the dict, hash and trial ids it had before they existed."""
        data = asdict(self)
        for name in LATER_FIELDS:
            if data[name] == FIELD_RULES[name].default:
                del data[name]
        if "lr_milestones" in data:
            data["lr_milestones"] = list(data["lr_milestones"])
        return data


def _check_names(changes: dict[str, Any]) -> None:
    valid = {f.name for f in fields(Recipe)}
    unknown = set(changes) - valid
    if unknown:
        raise ValueError(f"unknown recipe field(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(valid))}")


#: the valid values of the numeric fields besides their type (``epochs`` 0: a method that does not train)
_RANGES = {
    "epochs": ">= 0", "batch_size": ">= 1", "samples_per_class": ">= 1", "image_size": ">= 1", "resize_size": ">= 1",
    "lr_backbone": ">= 0", "lr_head": ">= 0", "lr_method": ">= 0", "weight_decay": ">= 0", "adam_eps": "> 0",
    "lr_decay_epochs": ">= 0", "lr_decay_gamma": "> 0", "warmup_epochs": ">= 0", "grad_clip_value": ">= 0",
    "eval_batch_size": ">= 1", "lr_milestones": ">= 1",
}
_CHOICES = {"sampler": SAMPLERS, "augmentation": AUGMENTATIONS, "pooling": POOLINGS, "head_init": HEAD_INITS,
            "decoder": DECODERS}
_KINDS: dict[str, Any] = {"lr_milestones": (tuple, int), "method_hparams": dict}
#: every field but ``name``: its type (its default's) and valid values, checked whenever a recipe is built
FIELD_RULES: dict[str, Param] = {
    f.name: Param(f.default, kind=_KINDS.get(f.name),
                  valid=Choice(_CHOICES[f.name]) if f.name in _CHOICES else _RANGES.get(f.name))
    for f in fields(Recipe) if f.name != "name"}
#: fields added after records were first written: a recipe's dict holds them only away from their defaults
LATER_FIELDS = ("lr_milestones", "backbone", "pretrained_weights", "drop_last")
#: ``epochs`` as a user sets it
USER_EPOCHS = Param(Recipe.epochs, valid=">= 1")

RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    return RECIPES.register(recipe.name)(recipe)


register_recipe(Recipe(
    name="default",
    # The shared protocol for ImageNet-pretrained backbones on CUB/Cars/SOP/In-Shop (224 px crops).
))
register_recipe(Recipe(
    name="cpu",
    # Small grayscale images (digits, omniglot) with the small CNN on a laptop CPU.
    epochs=12, batch_size=64, samples_per_class=4, image_size=28, resize_size=28, augmentation="none",
    optimizer="adamw", lr_backbone=1e-3, lr_head=1e-3, lr_method=1e-2, weight_decay=1e-4,
    lr_decay_epochs=8, lr_decay_gamma=0.1, freeze_bn=False, amp=False,
))
register_recipe(Recipe(
    name="digits",
    # The embedded default: scikit-learn's 8×8 digits (5 training classes, so 16 samples per class
    # make m-per-class batches of 4 classes) at 16 px, a few seconds per trial on a laptop CPU.
    epochs=8, batch_size=64, samples_per_class=16, image_size=16, resize_size=16, augmentation="none",
    optimizer="adamw", lr_backbone=1e-3, lr_head=1e-3, lr_method=1e-2, weight_decay=1e-4,
    lr_decay_epochs=6, lr_decay_gamma=0.1, freeze_bn=False, amp=False,
))
