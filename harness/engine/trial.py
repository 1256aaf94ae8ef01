"""One trial, as a plain function of a config dict: ``run_trial(config) -> record``.

Ray Tune calls it unchanged (through :mod:`harness.scheduling.ray_compat`); the local executor calls it
in-process. It trains one method on one dataset with one seed, evaluates on the unseen classes
(or on the validation classes during a search), and returns the trial record. A ``report``
callback receives every epoch's metrics and the path of the checkpoint written after it; a trial
restarted with ``resume_from`` a checkpoint goes on at the next epoch.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from harness.core.config import TrialConfig
from harness.plugins.data import DatasetSplits, ImageDataset, Subset, create_dataset
from harness.core.environment import environment_fingerprint
from harness.engine.evaluate import embed, evaluate_embeddings
from harness.plugins.method import Method, get_method_class
from harness.plugins.models import EmbeddingModel, create_backbone
from harness.core.recipe import Recipe
from harness.engine.train import Trainer, TrialFailed, build_train_loader, resolve_device, seed_everything
from harness.plugins.transforms import build_transform
from harness.engine.utilization import utilization

Report = Callable[[dict[str, Any], str | None], None]

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def build_model(config: TrialConfig, channels: int) -> tuple[EmbeddingModel, type[Method]]:
    """The embedding model a trial trains (also used to reload a trained trial for ``embed``)."""
    cls = get_method_class(config.method)
    backbone = create_backbone(config.backbone, in_chans=channels,
                               pretrained=None if cls.backbone else config.pretrained)
    model = EmbeddingModel(backbone, embedding_dim=config.embedding_dim,
                           normalize=cls.normalize_embedding, pooling=cls.pooling, taps=cls.taps)
    return model, cls


def eval_transform(model: EmbeddingModel, recipe: Recipe, channels: int):
    return build_transform(recipe, channels, getattr(model.backbone, "pretrained_cfg", None), train=False)


def _loader(subset: Subset, transform, channels: int, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(ImageDataset(subset, transform, channels=channels), batch_size=batch_size,
                      shuffle=False, num_workers=num_workers)


def evaluate_model(model: EmbeddingModel, splits: DatasetSplits, config: TrialConfig, device: torch.device,
                   include_nmi: bool = True, include_utilization: bool = False) -> dict[str, float]:
    """Recall@K, MAP@R, R-Precision (and NMI, and Metrix's utilization u(Q)) on the validation or test classes."""
    recipe, channels = config.recipe_obj, splits.channels
    transform = eval_transform(model, recipe, channels)
    if config.eval_split == "val":
        query, gallery = splits.val, None
    else:
        query, gallery = splits.query, splits.gallery
    q_emb, q_lab = embed(model, _loader(query, transform, channels, recipe.eval_batch_size, config.num_workers), device)
    g_emb = g_lab = None
    if gallery is not None:
        g_emb, g_lab = embed(model, _loader(gallery, transform, channels, recipe.eval_batch_size, config.num_workers), device)
    metrics = evaluate_embeddings(q_emb, q_lab, g_emb, g_lab, recall_ks=splits.recall_ks, include_nmi=include_nmi)
    if include_utilization:
        train = splits.train if config.eval_split == "val" else splits.trainval
        t_emb, _ = embed(model, _loader(train, transform, channels, recipe.eval_batch_size, config.num_workers), device)
        metrics["utilization"] = utilization(q_emb, t_emb)
    return metrics


def run_trial(config: dict[str, Any], report: Report | None = None, resume_from: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one trial; return its record (metrics, history, timing, environment).

    Raises :class:`TrialFailed` (non-finite loss, injected fault) and lets other errors propagate;
    executors turn either into a failed record.
    """
    cfg = TrialConfig.from_dict(config)
    start = time.time()
    generator = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    recipe = cfg.recipe_obj
    splits = create_dataset(cfg.dataset, cfg.data_root, cfg.val_fraction)
    train_subset = splits.train if cfg.eval_split == "val" else splits.trainval
    label_map = {int(c): i for i, c in enumerate(train_subset.classes)}

    model, cls = build_model(cfg, splits.channels)
    method = cls(num_classes=len(label_map), embedding_dim=model.embedding_dim, feature_dim=model.feature_dim,
                 **cfg.hparams)
    model.to(device)
    method.to(device)

    trial_dir = cfg.trial_dir
    history: list[dict[str, Any]] = []
    if recipe.epochs:
        trainer = Trainer(model, method, recipe, device)
        if resume_from:
            state = torch.load(Path(resume_from) / CHECKPOINT_FILE, map_location=device, weights_only=False)
            trainer.load_state_dict(state)
            history = state.get("history", [])
        train_tf = build_transform(recipe, splits.channels, getattr(model.backbone, "pretrained_cfg", None), train=True)
        loader = build_train_loader(ImageDataset(train_subset, train_tf, channels=splits.channels),
                                    train_subset.labels, recipe, cls.sampler, generator, cfg.num_workers)
        while trainer.epoch < recipe.epochs:
            if cfg.fail_at_epoch is not None and trainer.epoch + 1 >= cfg.fail_at_epoch:
                raise TrialFailed(f"injected failure at epoch {trainer.epoch + 1} (fail_at_epoch)")
            epoch_metrics = trainer.train_epoch(loader, label_map, progress=progress)
            if cfg.eval_split == "val":
                epoch_metrics.update({f"val_{k}": v for k, v in
                                      evaluate_model(model, splits, cfg, device, include_nmi=False).items()})
            history.append(epoch_metrics)
            checkpoint = None
            if report is not None:
                trial_dir.mkdir(parents=True, exist_ok=True)
                checkpoint = str(trial_dir)
                torch.save({**trainer.state_dict(), "history": history}, trial_dir / CHECKPOINT_FILE)
                report(epoch_metrics, checkpoint)

    metrics = evaluate_model(model, splits, cfg, device, include_utilization=cfg.utilization)
    if cfg.save_model:
        trial_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), trial_dir / MODEL_FILE)
    n_params = sum(p.numel() for p in list(model.parameters()) + list(method.parameters()) if p.requires_grad)
    return {
        "trial_id": cfg.trial_id,
        "status": "ok",
        "config": cfg.to_dict(),
        "recipe": {"name": recipe.name, "hash": recipe.hash},
        "resolved_hparams": dict(method.config),
        "metrics": metrics,
        "history": history,
        "wall_time_s": time.time() - start,
        "n_trainable_params": n_params,
        "environment": environment_fingerprint(device),
    }


def failed_record(config: dict[str, Any], error: BaseException | str, wall_time_s: float = 0.0) -> dict[str, Any]:
    """The record of a trial that raised: its config, the reason, and no metrics."""
    cfg = TrialConfig.from_dict(config)
    recipe = cfg.recipe_obj
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {"trial_id": cfg.trial_id, "status": "failed", "error": reason, "config": cfg.to_dict(),
            "recipe": {"name": recipe.name, "hash": recipe.hash}, "metrics": {}, "history": [],
            "wall_time_s": wall_time_s, "n_trainable_params": None, "environment": environment_fingerprint(None)}
