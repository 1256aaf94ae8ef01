"""One trial, as a plain function of its spec: ``run_trial(spec, placement, store, attempt) -> TrialRecord``.

Every executor calls it unchanged (the local one in-process, Ray Tune in a worker), with the store
its command built (a Ray worker: its node's view of it). It trains one
method on one dataset with one seed, evaluates on the unseen test classes (or on the validation
classes, ``eval_split="val"``), and returns the trial's :class:`~harness.core.record.TrialRecord`.

After every epoch it writes an epoch checkpoint through the :class:`~harness.core.store.TrialStore`
(model, method, optimiser, schedule, every RNG, the sampler's class order and the loader's
generator, the history and the time spent so far), so an interrupted trial resumed from it gives,
on the CPU with the same threads, metric-for-metric the numbers of an uninterrupted run. Then it
calls the attempt's ``on_epoch(metrics, checkpoint_path)``; a true answer prunes the trial (a search's
pruner). What varies between attempts of one trial, and never its result (the epoch callback,
resuming, the progress bar, the Ray node, the GPU sampler, torch's threads), is one :class:`Attempt`.
"""
from __future__ import annotations

import functools
import random
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

import harness
from harness.engine.hardware import environment_fingerprint
from harness.core.placement import Placement
from harness.core.record import TrialRecord
from harness.core.recipe import Recipe
from harness.core.spec import TrialSpec
from harness.core.store import TrialStore
from harness.core.trial import Trial
from harness.engine.evaluate import describe_evaluation, embed, evaluate_embeddings
from harness.engine.gpu_usage import GpuSampler
from harness.engine.tensor_files import load_tensors, tensor_bytes
from harness.engine.train import Trainer, TrialDiverged, TrialFailed, build_train_loader, resolve_device, seed_everything
from harness.core.metrics import METRICS, EvaluationInputs, split_metric
from harness.plugins.data import DatasetSplits, ImageDataset, Subset, create_dataset
from harness.plugins.method import Method, get_method_class
from harness.plugins.models import EmbeddingModel, create_backbone
from harness.plugins.transforms import DeviceLoader, InputPipeline, build_input, build_transform

#: called after each epoch with its metrics and the checkpoint just written; True prunes the trial
EpochCallback = Callable[[dict[str, Any], Path], "bool | None"]


class TrialPruned(Exception):
    """Raised when ``on_epoch`` asks to stop a trial early (a search's pruner)."""


@dataclass(frozen=True)
class Attempt:
    """How one attempt of a trial runs, besides its spec and placement; nothing here changes its result.

    ``on_epoch`` is called after each epoch (True prunes the trial); with ``resume`` the attempt
    continues from the epoch checkpoint in the store, if any; ``progress`` shows a bar per epoch;
    ``node`` names the Ray node it runs on (the record lists the nodes of every attempt); ``threads``
    sets torch's intra-op threads (the trial's CPU share); ``gpu`` samples its GPU
    (:func:`execute_trial` starts one); ``placement`` is where this attempt runs when that differs from the
    planned placement (a Ray worker's device, loader workers and share of its node's memory), None: as planned.
    The record keeps both: the planned placement and the one it ran under (:func:`actual_placement`).
    """

    on_epoch: EpochCallback | None = None
    resume: bool = False
    progress: bool = True
    node: dict[str, str] | None = None
    threads: int | None = None
    gpu: GpuSampler | None = None
    placement: Placement | None = None


def actual_placement(placement: Placement, attempt: Attempt) -> Placement:
    """The placement an attempt runs under: the attempt's own, else the planned ``placement``, with its device
    resolved (``auto`` becomes ``cpu`` or ``cuda:<index>``)."""
    placed = attempt.placement or placement
    device = resolve_device(placed.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return replace(placed, device=str(device))


def build_model(spec: TrialSpec, channels: int, pretrained: str | None = None) -> tuple[EmbeddingModel, type[Method]]:
    """The embedding model a trial trains (also used to reload a trained trial for ``embed``), from the
    trial's resolved specification only (its ``method_settings``), never the method class's attributes;
    ``pretrained``: the path of the initial weights on this machine (the placement's)."""
    backbone = create_backbone(spec.backbone, in_chans=channels, pretrained=pretrained)
    recipe, settings = spec.recipe_obj, spec.method_settings
    model = EmbeddingModel(backbone, embedding_dim=spec.embedding_dim, normalize=settings["normalize_embedding"],
                           pooling=settings["pooling"] or recipe.pooling, taps=tuple(settings["taps"]),
                           head_init=recipe.head_init)
    return model, get_method_class(spec.method)


def eval_transform(model: EmbeddingModel, recipe: Recipe, channels: int):
    return build_transform(recipe, channels, getattr(model.backbone, "pretrained_cfg", None), train=False)


def input_pipeline(model: EmbeddingModel, recipe: Recipe, channels: int, train: bool,
                   device: torch.device) -> InputPipeline:
    """The trial's input pipeline on ``device`` (on CUDA, the device normalises and may decode)."""
    return build_input(recipe, channels, getattr(model.backbone, "pretrained_cfg", None), train, device)


def _loader(subset: Subset, pipeline: InputPipeline, channels: int, batch_size: int, num_workers: int,
            device: torch.device, cache_bytes: int | None) -> DeviceLoader:
    dataset = ImageDataset(subset, pipeline.host, channels=channels, decoder=pipeline.decoder, cache_bytes=cache_bytes)
    return DeviceLoader(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                   pin_memory=device.type == "cuda", collate_fn=dataset.collate_fn), pipeline, device)


def evaluate_model(model: EmbeddingModel, splits: DatasetSplits, spec: TrialSpec, placement: Placement,
                   device: torch.device, include_nmi: bool = True, extra_metrics: Sequence[str] = ()
                   ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Recall@K, MAP@R, R-Precision (and NMI, and the optional registered ``extra_metrics``) on the
    validation or test classes, and the embeddings and labels they were computed from."""
    recipe, channels = spec.recipe_obj, splits.channels
    pipeline = input_pipeline(model, recipe, channels, False, device)
    query, gallery = (splits.val, None) if spec.eval_split == "val" else (splits.query, splits.gallery)

    def embed_subset(subset: Subset) -> tuple[torch.Tensor, torch.Tensor]:
        return embed(model, _loader(subset, pipeline, channels, recipe.eval_batch_size, placement.num_workers, device,
                                     placement.image_cache_bytes),
                     device)

    q_emb, q_lab = embed_subset(query)
    g_emb, g_lab = embed_subset(gallery) if gallery is not None else (None, None)
    metrics = evaluate_embeddings(q_emb, q_lab, g_emb, g_lab, recall_ks=splits.recall_ks, include_nmi=include_nmi)
    if extra_metrics:
        train = functools.cache(lambda: embed_subset(splits.train if spec.eval_split == "val" else splits.trainval)[0])
        inputs = EvaluationInputs(q_emb, q_lab, g_emb, g_lab, train_embeddings=train)
        metrics.update({name: float(METRICS.get(name).compute(inputs)) for name in extra_metrics})
    arrays = {"query": q_emb.float().cpu().numpy(), "query_labels": q_lab.cpu().numpy()}
    if g_emb is not None:
        arrays.update(gallery=g_emb.float().cpu().numpy(), gallery_labels=g_lab.cpu().numpy())
    return metrics, arrays


# ---- checkpoint state: tensors and plain types only (loadable with weights_only=True) -------------
def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_pos": int(pos), "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(gauss),
            "python_version": int(version), "python_internal": torch.tensor(internal, dtype=torch.int64),
            "python_gauss_next": gauss_next}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(int(x) for x in state["python_internal"].tolist()),
                     state["python_gauss_next"]))


def loader_state(loader: DataLoader, generator: torch.Generator) -> dict[str, Any]:
    """What the next epoch's batches depend on besides the global RNGs: the loader's generator and
    the class order pytorch-metric-learning's MPerClassSampler shuffles in place every epoch."""
    labels = getattr(loader.sampler, "labels", None)
    return {"generator": generator.get_state(),
            "sampler_labels": torch.as_tensor([int(c) for c in labels]) if labels is not None else None}


def set_loader_state(loader: DataLoader, generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"])
    if state["sampler_labels"] is not None:
        loader.sampler.labels = [type(loader.sampler.labels[0])(c) for c in state["sampler_labels"].tolist()]


def run_trial(spec: TrialSpec, placement: Placement, store: TrialStore, attempt: Attempt = Attempt()) -> TrialRecord:
    """Train and evaluate one trial through ``store``; return its record (the driver writes it).

    Raises :class:`TrialDiverged` (non-finite loss), :class:`TrialFailed` (injected fault), :class:`TrialPruned`, and lets other
    errors propagate; :func:`execute_trial` turns them into a failed or pruned record.
    """
    trial, gpu = Trial(spec, placement), attempt.gpu
    planned, placement = placement, actual_placement(placement, attempt)  # from here on, where it runs
    start = time.time()
    generator = seed_everything(spec.seed)
    device = torch.device(placement.device)
    recipe = spec.recipe_obj
    splits = create_dataset(spec.dataset, placement.data_root, spec.val_fraction, fold=spec.fold,
                            folds=spec.folds, withhold_test=spec.eval_split == "val")
    train_subset = splits.train if spec.eval_split == "val" else splits.trainval
    label_map = {int(c): i for i, c in enumerate(train_subset.classes)}

    model, cls = build_model(spec, splits.channels, placement.pretrained)
    method = cls(num_classes=len(label_map), embedding_dim=model.embedding_dim, feature_dim=model.feature_dim,
                 **spec.hparams)
    model.to(device)
    method.to(device)

    history: list[dict[str, Any]] = []
    elapsed_before, resumed_at, nodes = 0.0, None, [attempt.node] if attempt.node else []
    pipeline = input_pipeline(model, recipe, splits.channels, True, device)
    if recipe.epochs:
        trainer = Trainer(model, method, recipe, device)
        dataset = ImageDataset(train_subset, pipeline.host, channels=splits.channels, decoder=pipeline.decoder,
                               cache_bytes=placement.image_cache_bytes)
        loader = build_train_loader(dataset, train_subset.labels, recipe, spec.method_settings["sampler"], generator,
                                    placement.num_workers, device)
        state = store.load_checkpoint(trial, load_tensors) if attempt.resume else None
        if state is not None:
            trainer.load_state_dict(state["trainer"])
            set_rng_state(state["rng"])
            set_loader_state(loader, generator, state["loader"])
            history, elapsed_before, resumed_at = state["history"], state["elapsed_s"], trainer.epoch
            nodes = state.get("nodes", []) + nodes
        while trainer.epoch < recipe.epochs:
            if placement.fail_at_epoch is not None and trainer.epoch + 1 >= placement.fail_at_epoch:
                raise TrialFailed(f"injected failure at epoch {trainer.epoch + 1} (fail_at_epoch)")
            epoch_metrics = trainer.train_epoch(DeviceLoader(loader, pipeline, device), label_map,
                                                progress=attempt.progress)
            epoch_metrics.update(gpu.so_far() if gpu else {})
            if spec.eval_split == "val":
                scores, _ = evaluate_model(model, splits, spec, placement, device, include_nmi=False)
                epoch_metrics.update({split_metric("val", k): v for k, v in scores.items()})
            history.append(epoch_metrics)
            checkpoint = store.save_checkpoint(trial, tensor_bytes({
                "trainer": trainer.state_dict(), "rng": rng_state(), "loader": loader_state(loader, generator),
                "history": history, "elapsed_s": elapsed_before + time.time() - start, "nodes": nodes}))
            if attempt.on_epoch is not None and attempt.on_epoch(epoch_metrics, checkpoint):
                raise TrialPruned(f"pruned after epoch {trainer.epoch}")

    metrics, embeddings = evaluate_model(model, splits, spec, placement, device, extra_metrics=placement.extra_metrics)
    if placement.save_model:
        store.save_model(trial, tensor_bytes(model.state_dict()))
        store.save_embeddings(trial, **embeddings)
    n_params = sum(p.numel() for p in list(model.parameters()) + list(method.parameters()) if p.requires_grad)
    return TrialRecord(
        trial_id=spec.trial_id, status="ok", spec=spec, placement=planned, actual_placement=placement,
        metrics=metrics, history=history,
        wall_time_s=elapsed_before + time.time() - start, resumed_at_epoch=resumed_at, nodes=nodes, n_trainable_params=n_params,
        hparams_changed=cls.changed_hparams(method.config, spec.dataset, recipe),
        evaluation=describe_evaluation(device),
        loading=pipeline.describe(placement.num_workers),
        gpu=gpu.summary() if gpu else {"available": False, "reason": "not sampled"},
        environment=environment_fingerprint(device), harness_version=harness.__version__,
    )


def execute_trial(spec: TrialSpec, placement: Placement, store: TrialStore, attempt: Attempt = Attempt()) -> TrialRecord:
    """:func:`run_trial` that never raises: an error becomes a failed record with its reason and traceback,
    a pruned trial a ``pruned`` record, a diverged one (non-finite loss) a ``diverged`` record; its GPU is sampled meanwhile
    (:class:`~harness.engine.gpu_usage.GpuSampler`), torch runs on the attempt's ``threads``. A trial
    that ends (finished, diverged, failed or pruned) loses its epoch checkpoint, except a failed one,
    which keeps it for ``--resume``."""
    if attempt.threads:
        torch.set_num_threads(attempt.threads)
    trial = Trial(spec, placement)
    start = time.time()
    actual = actual_placement(placement, attempt)
    gpu = GpuSampler(torch.device(actual.device)).start()
    try:
        record = run_trial(spec, placement, store, replace(attempt, gpu=gpu, placement=actual))
    except TrialPruned as pruned:
        record = TrialRecord(trial_id=spec.trial_id, status="pruned", spec=spec, placement=placement,
                             actual_placement=actual, error=str(pruned), wall_time_s=time.time() - start,
                             environment=environment_fingerprint(None), harness_version=harness.__version__)
    except TrialDiverged as diverged:  # the same seed diverges again: nothing to resume
        record = TrialRecord.failed(trial, diverged, wall_time_s=time.time() - start, status="diverged",
                                    environment=environment_fingerprint(None), harness_version=harness.__version__)
    except Exception as error:  # noqa: BLE001: any failure becomes the trial's recorded reason
        return TrialRecord.failed(trial, error, wall_time_s=time.time() - start, traceback=traceback.format_exc(),
                                  environment=environment_fingerprint(None), harness_version=harness.__version__,
                                  actual_placement=actual)
    finally:
        gpu.stop()
    store.delete_checkpoint(trial)
    return record
