"""Metrix: mixed targets and pairs, reduction to the clean loss, the three mixing places, training;
and the utilization metric."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses

from harness.plugins.method import METHODS, create_method
from harness.plugins.models import EmbeddingModel, create_backbone
from harness.plugins.method import find_recipe
from harness.engine.train import Trainer
from harness.engine.runner import build_model
from methods.metrix_recipes import CODE_HPARAMS
from harness.engine.utilization import utilization
from methods.metrix import MixPlan, anchor_negative_plan, hardest_negatives, mixed_targets, positive_negative_plan

NAMES = ["metrix_contrastive", "metrix_ms", "metrix_proxyanchor"]


def all_pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None]
    return same & ~torch.eye(len(labels), dtype=torch.bool), ~same


def related(plan: MixPlan, targets: torch.Tensor) -> set[tuple[int, int, int, float]]:
    """{(anchor, first, second, target)} of the plan's related anchor–mixed-example pairs."""
    return {(a, int(plan.first[k]), int(plan.second[k]), round(float(targets[a, k]), 6))
            for a, k in plan.relation.nonzero().tolist()}


def test_registered_with_code_defaults_and_recipe():
    for name in NAMES:
        assert name in METHODS.names()
        cls = METHODS.get(name)
        assert cls.pooling is None and cls.normalize_embedding and cls.paper_recipe.name == name.replace("_contrastive", "")
    method = create_method("metrix_contrastive", num_classes=4, embedding_dim=8, feature_dim=8)
    assert method.config == {"mix_at": "feature", "weight": 0.4, "mix_alpha": 2.0, "hard_negatives": None,
                             "pos_margin": 0.0, "neg_margin": 1.0}
    assert method.hard_negatives == 0
    assert create_method("metrix_ms", num_classes=4, embedding_dim=8, feature_dim=8, mix_at="input").hard_negatives == 1
    for name, epochs, gamma in (("metrix", 60, 0.1), ("metrix_ms", 100, 0.5), ("metrix_proxyanchor", 100, 0.5)):
        recipe = find_recipe(name)
        assert (recipe.optimizer, recipe.batch_size, recipe.sampler, recipe.warmup_epochs, recipe.epochs,
                recipe.lr_decay_epochs, recipe.lr_decay_gamma) == ("adam", 100, "random", 5, epochs, 10, gamma)
        assert (recipe.pooling, recipe.head_init, recipe.grad_clip_value, recipe.freeze_bn) == \
            ("avgmax", "kaiming_normal_fan_out", 10.0, True)
    assert CODE_HPARAMS == {"contrastive": {"neg_margin": 0.5},
                            "ms": {"alpha": 17.97, "beta": 75.66, "base": 0.77, "epsilon": 0.39}}


BASELINES = {"metrix_contrastive": "contrastive", "metrix_ms": "ms", "metrix_proxyanchor": "proxyanchor"}


def trained_under(name: str, recipe_name: str, **hparams) -> tuple[dict, torch.Tensor]:
    """A method's resolved config and its model's and own parameters after one epoch of three batches
    under a recipe, the model built as a trial builds it (pooling and head init from the recipe)."""
    recipe = find_recipe(recipe_name).override(epochs=1, warmup_epochs=0, amp=False)
    config = SimpleNamespace(method=name, backbone="small_cnn", pretrained=None, embedding_dim=16, recipe_obj=recipe,
                             method_settings=METHODS.get(name).settings())
    torch.manual_seed(0)
    model, cls = build_model(config, channels=1)
    method = cls(num_classes=4, embedding_dim=16, feature_dim=model.feature_dim, **hparams)
    trainer = Trainer(model, method, recipe, torch.device("cpu"))
    images, labels = image_batch()
    trainer.train_epoch([(images, labels)] * 3, {i: i for i in range(4)}, progress=False)
    weights = torch.cat([p.detach().flatten() for p in [*model.parameters(), *method.parameters()]])
    return method.config, weights


@pytest.mark.parametrize("recipe_name", ["cpu", "metrix"])
@pytest.mark.parametrize("name", NAMES)
def test_metrix_without_mixing_is_its_baseline_under_the_same_recipe(name, recipe_name):
    """weight = 0 makes the mixing vanish: the same hyperparameters, sampler, pooling and head init
    then train exactly the baseline's model."""
    baseline = BASELINES[name]
    assert METHODS.get(name).sampler == METHODS.get(baseline).sampler
    metrix_config, metrix_weights = trained_under(name, recipe_name, weight=0.0)
    base_config, base_weights = trained_under(baseline, recipe_name)
    assert {k: metrix_config[k] for k in base_config} == base_config
    torch.testing.assert_close(metrix_weights, base_weights, rtol=0, atol=0)
    _, mixing = trained_under(name, recipe_name)
    assert not torch.equal(mixing, base_weights)
    with pytest.raises(ValueError, match="valid: input, feature, embed"):
        create_method("metrix_ms", num_classes=4, embedding_dim=8, feature_dim=8, mix_at="pixels")


def test_mixed_pairs_and_targets_match_a_slow_reference():
    # classes 0 and 1 have two samples each; samples 4 and 5 (classes 2, 3) have no positive
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    pos, neg = all_pair_masks(labels)
    lam = 0.3
    n = len(labels)

    def y(a: int, i: int) -> float:
        """The binary target of example i for anchor a."""
        return float(labels[a] == labels[i])

    plan = positive_negative_plan(pos, neg)
    targets = mixed_targets(labels, labels[plan.first], labels[plan.second], lam)
    expected = {(a, p, q, round(lam * y(a, p) + (1 - lam) * y(a, q), 6))
                for a in range(n) for p in range(n) for q in range(n)
                if p != a and labels[p] == labels[a] and labels[q] != labels[a]}
    assert related(plan, targets) == expected
    assert {t for *_, t in expected} == {lam}

    plan = anchor_negative_plan(pos, neg)
    targets = mixed_targets(labels, labels[plan.first], labels[plan.second], lam)
    expected = {(a, a, q, round(lam * y(a, a) + (1 - lam) * y(a, q), 6))
                for a in (4, 5) for q in range(n) if labels[q] != labels[a]}
    assert related(plan, targets) == expected

    # Proxy-Anchor: every proxy c sees every mixed example, with target λ[y = c] + (1 − λ)[y' = c]
    targets = mixed_targets(torch.arange(4), torch.tensor([0, 2]), torch.tensor([1, 0]), lam)
    torch.testing.assert_close(targets, torch.tensor([[lam, 1 - lam], [1 - lam, 0], [0, lam], [0, 0]]))


def test_pair_kind_is_drawn_among_the_kinds_the_batch_has():
    method = create_method("metrix_contrastive", num_classes=8, embedding_dim=8, feature_dim=8)
    emb = F.normalize(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    torch.manual_seed(0)

    def same(plan: MixPlan, expected: MixPlan) -> bool:
        return all(torch.equal(getattr(plan, f), getattr(expected, f)) for f in ("first", "second", "relation"))

    m_per_class, no_positives = torch.arange(4).repeat_interleave(2), torch.arange(8)
    both = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])
    for _ in range(5):
        assert same(method.mixing_plan(emb, m_per_class), positive_negative_plan(*all_pair_masks(m_per_class)))
        assert same(method.mixing_plan(emb, no_positives), anchor_negative_plan(*all_pair_masks(no_positives)))
    kinds = [same(method.mixing_plan(emb, both), positive_negative_plan(*all_pair_masks(both))) for _ in range(20)]
    assert any(kinds) and not all(kinds)
    assert method.mixing_plan(emb, torch.zeros(8, dtype=torch.long)) is None


def test_hardest_negatives_keep_the_most_similar_negatives():
    labels = torch.tensor([0, 0, 1, 2, 3])
    _, neg = all_pair_masks(labels)
    similarity = torch.tensor([[1.0, 0.9, 0.2, 0.7, 0.5]]).repeat(5, 1)
    hard = hardest_negatives(neg, similarity, 2)
    assert hard[0].nonzero().flatten().tolist() == [3, 4]
    assert torch.equal(hardest_negatives(neg, similarity, 0), neg)
    assert (hard.sum(1) == 2).all() and not (hard & ~neg).any()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(4)
    return F.normalize(torch.randn(12, 16, generator=g), dim=-1), labels


def test_contrastive_mixed_term_reduces_to_the_clean_loss_on_the_corresponding_pairs(batch):
    emb, labels = batch
    method = create_method("metrix_contrastive", num_classes=3, embedding_dim=16, feature_dim=16)
    plan = positive_negative_plan(*all_pair_masks(labels))
    a, k = plan.relation.nonzero(as_tuple=True)
    none = torch.tensor([], dtype=torch.long)
    clean = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
    at_one = method.mixed_loss(emb, labels, emb[plan.first], plan, 1.0)
    torch.testing.assert_close(at_one, clean(emb, labels, (a, plan.first[k], none, none)))
    at_zero = method.mixed_loss(emb, labels, emb[plan.second], plan, 0.0)
    torch.testing.assert_close(at_zero, clean(emb, labels, (none, none, a, plan.second[k])))


def test_ms_mixed_term_reduces_to_the_clean_loss_on_the_corresponding_pairs(batch):
    emb, labels = batch
    method = create_method("metrix_ms", num_classes=3, embedding_dim=16, feature_dim=16)
    plan = positive_negative_plan(*all_pair_masks(labels))
    clean = losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    for lam, side in ((1.0, plan.first), (0.0, plan.second)):
        mixed = emb[side]
        per_anchor = [clean(emb[i:i + 1], labels[i:i + 1], ref_emb=mixed[plan.relation[i]],
                            ref_labels=labels[side][plan.relation[i]]) for i in range(len(labels))]
        torch.testing.assert_close(method.mixed_loss(emb, labels, mixed, plan, lam), torch.stack(per_anchor).mean())


def test_proxyanchor_mixed_term_reduces_to_the_clean_loss_on_the_corresponding_examples(batch):
    emb, labels = batch
    torch.manual_seed(0)
    method = create_method("metrix_proxyanchor", num_classes=3, embedding_dim=16, feature_dim=16)
    plan = method.mixing_plan(emb, labels)
    assert plan.relation.shape == (3, 12 * 8) and plan.relation.all()
    for lam, side in ((1.0, plan.first), (0.0, plan.second)):
        torch.testing.assert_close(method.mixed_loss(emb, labels, emb[side], plan, lam),
                                   method.criterion(emb[side], labels[side]))


def test_mixed_terms_match_a_loop_reference_at_any_lambda(batch):
    emb, labels = batch
    lam = 0.35
    g = torch.Generator().manual_seed(1)
    plan = positive_negative_plan(*all_pair_masks(labels))
    mixed = F.normalize(lam * emb[plan.first] + (1 - lam) * emb[plan.second] + 0.1 * torch.randn(
        len(plan.first), 16, generator=g), dim=-1)
    pairs = plan.relation.nonzero().tolist()

    def dist(a: int, k: int) -> torch.Tensor:
        return (emb[a] - mixed[k]).norm()

    def sim(a: int, k: int) -> torch.Tensor:
        return emb[a] @ mixed[k]

    contrastive = create_method("metrix_contrastive", num_classes=3, embedding_dim=16, feature_dim=16,
                                neg_margin=0.5)  # the authors' m⁻, so that some negative terms are zero
    pos = [lam * dist(a, k) for a, k in pairs]
    neg = [(1 - lam) * F.relu(0.5 - dist(a, k)) for a, k in pairs]
    expected = sum(pos) / len(pos) + sum(neg) / max(sum(1 for v in neg if v > 0), 1)
    torch.testing.assert_close(contrastive.mixed_loss(emb, labels, mixed, plan, lam), expected)

    ms = create_method("metrix_ms", num_classes=3, embedding_dim=16, feature_dim=16)
    expected = 0.0
    for a in range(len(labels)):
        ks = [k for b, k in pairs if b == a]
        expected += torch.log(1 + sum(lam * torch.exp(-2 * (sim(a, k) - 0.5)) for k in ks)) / 2
        expected += torch.log(1 + sum((1 - lam) * torch.exp(50 * (sim(a, k) - 0.5)) for k in ks)) / 50
    torch.testing.assert_close(ms.mixed_loss(emb, labels, mixed, plan, lam), expected / len(labels))

    pa = create_method("metrix_proxyanchor", num_classes=3, embedding_dim=16, feature_dim=16)
    plan = MixPlan(plan.first, plan.second, torch.ones(3, len(plan.first), dtype=torch.bool))
    proxies = F.normalize(pa.criterion.proxies.detach(), dim=-1)
    pos_terms, neg = [], 0.0
    for c in range(3):
        t = [lam * float(labels[i] == c) + (1 - lam) * float(labels[j] == c) for i, j in zip(plan.first, plan.second)]
        s = mixed @ proxies[c]
        if any(t):
            pos_terms.append(torch.log(1 + sum(tk * torch.exp(-32 * (sk - 0.1)) for tk, sk in zip(t, s))))
        neg += torch.log(1 + sum((1 - tk) * torch.exp(32 * (sk + 0.1)) for tk, sk in zip(t, s)))
    expected = sum(pos_terms) / len(pos_terms) + neg / 3
    torch.testing.assert_close(pa.mixed_loss(emb, labels, mixed, plan, lam), expected)


def tiny_model(embedding_dim: int = 16) -> EmbeddingModel:
    return EmbeddingModel(create_backbone("small_cnn", in_chans=1), embedding_dim, pooling="avgmax")


def image_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    prototypes = torch.randn(4, 1, 16, 16, generator=g)
    return prototypes[labels] + 0.5 * torch.randn(16, 1, 16, 16, generator=g), labels


@pytest.mark.parametrize("mix_at,forward_passes", [("input", 2), ("feature", 1), ("embed", 1)])
def test_each_mixing_place_runs_with_the_expected_shapes(mix_at, forward_passes):
    torch.manual_seed(0)
    model, (images, labels) = tiny_model(), image_batch()
    method = create_method("metrix_contrastive", num_classes=4, embedding_dim=16, feature_dim=256, mix_at=mix_at)
    calls = []
    model.backbone.stages[0].register_forward_hook(lambda *_: calls.append(1))
    loss = method.training_loss(model, images, labels)
    assert len(calls) == forward_passes and torch.isfinite(loss)
    loss.backward()
    assert model.backbone.stages[0].conv.weight.grad.abs().sum() > 0

    outputs = model(images)
    plan = method.mixing_plan(F.normalize(outputs.embedding.detach(), dim=-1), labels)
    # (anchor, positive, negative) triples: input mixing takes each anchor's hardest negative only
    assert plan.relation.sum() == 16 * 3 * (1 if mix_at == "input" else 12)
    assert len(plan.first) <= 16 * 3 if mix_at == "input" else len(plan.first) == 16 * 12
    mixed = method.mix(model, images, outputs, plan, 0.3)
    assert mixed.shape == (len(plan.first), 16) and plan.relation.shape == (16, len(plan.first))
    if mix_at == "feature":
        feature_map = outputs.feature_map
        expected = model.forward_head(0.3 * feature_map[plan.first] + 0.7 * feature_map[plan.second]).embedding
        torch.testing.assert_close(mixed, expected)


def test_feature_mixing_trains_reproducibly():
    def trained_weights() -> torch.Tensor:
        torch.manual_seed(0)
        model, (images, labels) = tiny_model(), image_batch()
        method = create_method("metrix_ms", num_classes=4, embedding_dim=16, feature_dim=256)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):
            optimizer.zero_grad()
            method.training_loss(model, images, labels).backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(trained_weights(), trained_weights())


@pytest.mark.parametrize("name", NAMES)
def test_loss_decreases_when_training_on_fixed_data(name):
    torch.manual_seed(0)
    model, (images, labels) = tiny_model(), image_batch()
    method = create_method(name, num_classes=4, embedding_dim=16, feature_dim=256)
    optimizer = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=5e-3)

    def loss_now() -> torch.Tensor:
        torch.manual_seed(1)  # the same λ and pair kind every time
        return method.training_loss(model, images, labels)

    with torch.no_grad():
        first = loss_now().item()
    for _ in range(12):
        optimizer.zero_grad()
        method.training_loss(model, images, labels).backward()
        optimizer.step()
    with torch.no_grad():
        last = loss_now().item()
    assert last < 0.7 * first, f"{name}: loss {first:.4f} -> {last:.4f}"


def test_training_loss_is_clean_plus_weighted_mixed_term():
    torch.manual_seed(0)
    model, (images, labels) = tiny_model(), image_batch()
    method = create_method("metrix_ms", num_classes=4, embedding_dim=16, feature_dim=256, mix_at="embed", weight=0.0)
    outputs = model(images)
    torch.testing.assert_close(method.training_loss(model, images, labels), method.loss(outputs, labels))


def test_utilization_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    query, train = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
    expected = ((query[:, None] - train[None]) ** 2).sum(-1).min(1).mean()
    assert utilization(query, train, chunk_size=8) == pytest.approx(expected, rel=1e-5)
    assert utilization(torch.from_numpy(train), torch.from_numpy(train)) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        utilization(query, train[:, :3])


def test_a_metrix_recipe_gives_the_baseline_and_its_metrix_row_the_authors_hyperparameters():
    from harness.experiment import ExperimentConfig
    from methods.metrix_recipes import CODE_HPARAMS

    for recipe, base in (("metrix_ms", "ms"), ("metrix", "contrastive")):
        trials = ExperimentConfig(methods=[base, f"metrix_{base}"], dataset="digits", recipe=recipe).trials()
        for trial in trials:
            assert {k: trial.spec.hparams[k] for k in CODE_HPARAMS[base]} == CODE_HPARAMS[base], trial.spec.method
    plain = ExperimentConfig(methods=["ms"], dataset="digits").trials()[0]
    assert plain.spec.hparams["alpha"] == 2.0  # the MS paper's value outside the Metrix recipes
    override = ExperimentConfig(methods=["ms"], dataset="digits", recipe="metrix_ms",
                                hparams={"ms": {"alpha": 3.0}}).trials()[0]
    assert override.spec.hparams["alpha"] == 3.0 and override.spec.hparams["beta"] == 75.66  # the user's value wins
