"""Paper recipes: each method and its declared baseline train alike under ``--recipe paper`` (or the run
is refused), schedules follow the authors' code to the epoch, and methods' own parameters train at the
code's relative rates under shared recipes (issue 24)."""
from __future__ import annotations

import pytest
import torch

from harness.core.recipe import RECIPES, Recipe
from harness.engine.train import Trainer
from harness.core.protocol import check_one_recipe
from harness.experiment import ExperimentConfig
from harness.plugins.method import METHODS, create_method, get_method_class
from harness.plugins.models import EmbeddingModel, create_backbone

#: the recipe fields a method and its baseline may differ in (their hyperparameters are their own)
NOT_TRAINING = ("name", "method_hparams")


def paper(methods: list[str], **fields) -> ExperimentConfig:
    return ExperimentConfig(methods=methods, recipe="paper", **fields)


def training(recipe: Recipe) -> dict:
    return {k: v for k, v in recipe.to_dict().items() if k not in NOT_TRAINING}


def code_learning_rates(base: float, epochs: int, every: int, rate: float) -> list[float]:
    """The rate of each 0-based epoch in the JRD and SoftTriple code: ``adjust_learning_rate`` runs before
    the epoch and multiplies by ``rate`` when (epoch + 1) % every == 0 (JRD train.py:86-87, 198-201)."""
    lr, out = base, []
    for epoch in range(epochs):
        if (epoch + 1) % every == 0:
            lr *= rate
        out.append(lr)
    return out


def trained_learning_rates(recipe: Recipe) -> list[float]:
    """The backbone group's rate during each epoch of a Trainer under ``recipe`` (the schedule stepped
    after each epoch, as the training loop does)."""
    model = EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim=8)
    method = create_method("amsoftmax", num_classes=3, embedding_dim=8, feature_dim=model.feature_dim)
    trainer = Trainer(model, method, recipe, torch.device("cpu"))
    rates = []
    for _ in range(recipe.epochs):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    return rates


def test_jrd_and_its_ablation_amsoftmax_get_the_same_paper_recipe():
    config = paper(["jrd", "amsoftmax"])
    assert config.recipe_for("jrd") == config.recipe_for("amsoftmax")
    recipe = config.recipe_for("amsoftmax")
    assert (recipe.name, recipe.optimizer, recipe.adam_eps, recipe.batch_size, recipe.sampler) == \
        ("jrd", "adam", 0.01, 100, "random")
    paper(["jrd", "amsoftmax"], from_scratch=True).validate()  # not refused (the weights aside: see test_protocol)


def test_softtriple_has_its_codes_recipe():
    recipe = paper(["softtriple"]).recipe_for("softtriple")
    assert recipe.name == "softtriple" and recipe == get_method_class("softtriple").paper_recipe
    assert (recipe.optimizer, recipe.adam_eps, recipe.lr_backbone, recipe.lr_head, recipe.lr_method,
            recipe.weight_decay) == ("adam", 0.01, 1e-4, 1e-4, 1e-2, 1e-4)
    assert (recipe.batch_size, recipe.sampler, recipe.epochs, recipe.lr_milestones, recipe.lr_decay_gamma) == \
        (32, "random", 50, (19, 39), 0.1)
    assert (recipe.freeze_bn, recipe.pooling, recipe.augmentation, recipe.image_size) == (True, "avg", "rrc_flip", 224)


def test_metrix_baselines_take_the_metrix_codes_recipe():
    for method, baseline in (("metrix_ms", "ms"), ("metrix_contrastive", "contrastive")):
        config = paper([method, baseline])
        assert config.recipe_for(method) == config.recipe_for(baseline)
        assert config.recipe_for(baseline).optimizer == "adam" and config.recipe_for(baseline).pooling == "avgmax"


@pytest.mark.parametrize("method", [m for m in METHODS.names() if METHODS.get(m).baseline])
def test_every_method_and_its_baseline_train_alike_under_paper_or_the_run_is_refused(method):
    baseline = get_method_class(method).baseline
    assert baseline in METHODS.names()
    config = paper([method, baseline], from_scratch=True)  # the pretrained weights aside
    ours, theirs = config.recipe_for(method), config.recipe_for(baseline)
    if training(ours) == training(theirs):
        config.validate()
        return
    assert (ours.optimizer, ours.pooling) != (theirs.optimizer, theirs.pooling) or training(ours) != training(theirs)
    with pytest.raises(ValueError, match=f"--recipe paper would train {method} .*, {baseline} .*under recipes that differ"):
        config.validate()


def test_the_pairs_that_still_differ_are_refused_naming_the_fields():
    with pytest.raises(ValueError, match=r"nir \(nir\), proxyanchor \(proxyanchor\) under recipes that differ in .*optimizer"):
        check_one_recipe({m: paper(["nir"]).recipe_for(m).to_dict() for m in ("nir", "proxyanchor")}, False)
    with pytest.raises(ValueError, match="metrix_proxyanchor .*, proxyanchor .*under recipes that differ"):
        paper(["metrix_proxyanchor", "proxyanchor"], from_scratch=True).validate()
    # one shared recipe trains them alike: not refused; --incomparable-rows runs them anyway
    ExperimentConfig(methods=["nir", "proxyanchor"], recipe="nir").validate()
    ExperimentConfig(methods=["nir", "proxyanchor"], recipe="paper", incomparable_rows=True, from_scratch=True).validate()


def test_jrd_learning_rate_follows_the_codes_schedule_to_the_epoch():
    recipe = get_method_class("jrd").paper_recipe
    ours = trained_learning_rates(recipe)
    code = code_learning_rates(recipe.lr_backbone, 50, every=20, rate=0.1)
    assert [ours[e] for e in (18, 19, 38, 39)] == pytest.approx([1e-4, 1e-5, 1e-5, 1e-6])
    assert [code[e] for e in (18, 19, 38, 39)] == pytest.approx([1e-4, 1e-5, 1e-5, 1e-6])
    assert ours == pytest.approx(code)  # 19, 20 and 11 epochs at 1, 0.1 and 0.01 of the rate


def test_softtriple_learning_rate_follows_the_codes_schedule():
    recipe = get_method_class("softtriple").paper_recipe
    assert trained_learning_rates(recipe) == pytest.approx(code_learning_rates(1e-4, 50, every=20, rate=0.1))


def test_a_step_schedule_still_decays_after_its_step_and_keeps_its_hash():
    cpu = RECIPES.get("cpu")
    rates = trained_learning_rates(cpu)
    assert rates[7] == pytest.approx(1e-3) and rates[8] == pytest.approx(1e-4)
    assert "lr_milestones" not in cpu.to_dict() and cpu.hash == "8632e8cd"  # the committed records' hash
    assert Recipe(**get_method_class("jrd").paper_recipe.to_dict()) == get_method_class("jrd").paper_recipe
    with pytest.raises(ValueError, match="lr_milestones"):
        Recipe("bad", lr_milestones=(20, 10))


def test_intra_batch_trains_every_parameter_at_the_backbones_rate_under_a_shared_recipe():
    cpu = RECIPES.get("cpu")
    method = create_method("intra_batch", num_classes=5, embedding_dim=16, feature_dim=32)
    (group,) = method.param_groups(cpu)
    assert group["lr"] == cpu.lr_backbone == 1e-3
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in method.parameters() if p.requires_grad)


def test_nir_flow_trains_at_the_codes_rate_relative_to_the_backbone_under_a_shared_recipe():
    cpu = RECIPES.get("cpu")
    method = create_method("nir", num_classes=5, embedding_dim=16, feature_dim=32)
    groups = {g["name"]: g["lr"] for g in method.param_groups(cpu)}
    assert groups == {"proxies": pytest.approx(cpu.lr_method), "flow": pytest.approx(50 * cpu.lr_backbone)}
