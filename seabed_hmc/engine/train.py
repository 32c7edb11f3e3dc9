"""Training a hierarchical classifier on images: readable top to bottom, resumable, logged.

``train(config)`` writes into ``config.out``: ``config.yaml`` (the resolved config), ``last.pt`` and
``best.pt`` (checkpoints, written atomically), ``log.csv`` (one row per epoch), ``metrics.json`` (the
best checkpoint on validation and test, scored as ``evaluate`` scores it) and ``nodes.csv`` (the
per-node report), plus ``problems.csv`` when images were skipped, and ``status.json`` (running,
finished, stopped, failed with the error, or interrupted; with the command).

With a frozen encoder and ``train.feature_cache``, features are computed once (and reused across runs
through the on-disk cache); each epoch then trains the heads on those tensors.  Otherwise each epoch
streams images through the whole model.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import random
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto: it iterates a DataLoader twice (two worker sets)

from seabed_hmc.atomic import write_text_atomic
from seabed_hmc.config import RunConfig, config_to_dict, save_config
from seabed_hmc.data.images import ImageDataset, collate_skip_bad
from seabed_hmc.engine import distributed
from seabed_hmc.engine.allocator import serve_large_blocks_from_heap
from seabed_hmc.engine.checkpoint import Checkpoints, ModelCheckpoint, clone_weights, read_model
from seabed_hmc.engine.data_and_model import (
    PreparedData,
    build_model,
    normalisation,
    prepare_data,
    transforms,
)
from seabed_hmc.engine.device import device_of, loader_workers, resolve_device, to_device
from seabed_hmc.engine.distributed import World
from seabed_hmc.engine.evaluation import (
    SCORES_FILE,
    Inputs,
    feature_cache,
    score_split,
    split_inputs,
)
from seabed_hmc.engine.finish import finish
from seabed_hmc.losses import build_loss, node_frequencies
from seabed_hmc.models.classifier import HierarchicalClassifier

log = logging.getLogger("seabed_hmc")
STATUS_FILE = "status.json"


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Every epoch starts from generators seeded by (seed, epoch): resuming at an epoch is exact."""
    value = seed * 100_003 + epoch
    random.seed(value)
    np.random.seed(value % 2**32)  # noqa: NPY002  (libraries that use the global generator)
    torch.manual_seed(value)


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)
    info.dataset.seed(seed)


def _loader(
    dataset: ImageDataset, batch_size: int, workers: int, shuffle: bool, seed: int, pin: bool = False
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        worker_init_fn=_seed_worker if workers else None,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        drop_last=False,
        pin_memory=pin,
    )


def build_inputs(config: RunConfig, model: HierarchicalClassifier, data: PreparedData, norm: dict) -> dict:
    """Per split, either cached features (frozen encoder + cache) or an image dataset
    (:func:`~seabed_hmc.engine.evaluation.split_inputs`, the path ``evaluate`` takes too)."""
    table = data.table
    train_transform, eval_transform = transforms(config, norm, device_of(model))
    cache = feature_cache(model, config)
    inputs = {}
    for split, rows in data.splits.items():
        if len(rows) == 0:
            continue
        paths = table.frame["image"].iloc[rows].tolist()
        is_train = split == "train"
        augmented = is_train and (cache is None or config.train.augmented_views)
        dataset = ImageDataset(
            paths, table.targets[rows], table.mask[rows], train_transform if augmented else eval_transform
        )
        views = config.train.augmented_views if is_train and config.train.augmented_views else 1
        inputs[split], bad = split_inputs(model, config, dataset, cache, views, f"{split} features")
        data.problems.extend(bad)
    return inputs


def refit_batchnorm(model: HierarchicalClassifier, config: RunConfig, data: PreparedData, norm: dict) -> None:
    """Re-estimate the encoder's BatchNorm statistics on the first ``encoder.batchnorm_refit`` training
    images of a seeded shuffle, with the evaluation transform (the option's note in config.py)."""
    rows = data.splits["train"]
    order = np.random.default_rng(config.train.seed).permutation(len(rows))[: config.encoder.batchnorm_refit]
    paths = data.table.frame["image"].iloc[rows[np.sort(order)]].tolist()
    device = device_of(model)
    _, eval_transform = transforms(config, norm, device)
    empty = torch.zeros(len(paths), 0)
    workers = loader_workers(config.data.workers, device)
    loader = _loader(
        ImageDataset(paths, empty, empty, eval_transform), 64, workers, False, 0, device.type == "cuda"
    )
    digest = hashlib.sha1("\n".join(paths).encode()).hexdigest()[:16]
    seen = model.encoder.refit_batchnorm(
        (model.prepare_input(to_device(b["image"], device)) for b in loader if b["index"].numel()),
        f"train images {digest}",
    )
    log.info("re-estimated BatchNorm statistics on %d training images", seen)


def train_epoch(
    model,
    loss_fn,
    optimizer,
    inputs: Inputs,
    config: RunConfig,
    epoch: int,
    problems: list,
    net=None,
    world: World | None = None,
) -> float:
    """One pass over the training split; returns the mean loss (of this rank's samples).

    ``net`` is what the forward pass calls (the head, or the whole model; wrapped in
    DistributedDataParallel under torchrun).  With several ranks every rank draws the same batches
    (same seeds) and takes every ``world.size``-th sample of each; a final batch smaller than the number
    of ranks is dropped on all of them."""
    model.train()
    settings = config.train
    world = world or World()
    device = device_of(model)
    total, batches = 0.0, 0
    if inputs.features is not None:
        net = net if net is not None else model.head
        views, count = inputs.features.shape[:2]
        order = torch.randperm(count)
        view = torch.randint(views, (count,))
        for batch in tqdm(
            order.split(settings.batch_size),
            desc=f"epoch {epoch}",
            disable=not settings.progress or not world.main,
            leave=False,
        ):
            if world.distributed:
                if len(batch) < world.size:
                    continue
                batch = batch[world.rank :: world.size]
            logits = net(to_device(inputs.features[view[batch], batch], device))
            targets, mask = to_device(inputs.targets[batch], device), to_device(inputs.mask[batch], device)
            loss = loss_fn(logits, targets, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        return total / max(batches, 1)
    net = net if net is not None else model
    seed = settings.seed * 1000 + epoch
    workers, pin = loader_workers(config.data.workers, device), device.type == "cuda"
    if not workers:  # in-process loading: the augmentation generator is seeded per epoch
        inputs.images.seed(seed)  # too (workers are seeded by _seed_worker), so a resumed run is exact
    if world.distributed:
        loader = DataLoader(
            inputs.images,
            batch_sampler=RankBatches(len(inputs.images), settings.batch_size, seed, world),
            num_workers=workers,
            collate_fn=collate_skip_bad,
            worker_init_fn=_seed_worker if workers else None,
            pin_memory=pin,
        )
    else:
        loader = _loader(inputs.images, settings.batch_size, workers, True, seed, pin)
    for batch in tqdm(
        loader, desc=f"epoch {epoch}", disable=not settings.progress or not world.main, leave=False
    ):
        problems.extend(
            (inputs.images.paths[i], "failed to load during training") for i in batch.get("bad", [])
        )
        # every rank takes the step or none does (a rank whose images all failed would hang the rest)
        if not world.all_agree(batch["index"].numel() > 0):
            continue
        images = to_device(batch["image"], device)
        if settings.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets, mask = to_device(batch["targets"], device), to_device(batch["mask"], device)
        loss = loss_fn(net(images), targets, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    return total / max(batches, 1)


class RankBatches(torch.utils.data.Sampler):
    """Under torchrun: the same seeded shuffle on every rank, each batch split between the ranks."""

    def __init__(self, count: int, batch_size: int, seed: int, world: World):
        self.count, self.batch_size, self.seed, self.world = count, batch_size, seed, world

    def __iter__(self):
        order = torch.randperm(self.count, generator=torch.Generator().manual_seed(self.seed))
        for batch in order.split(self.batch_size):
            if len(batch) >= self.world.size:
                yield batch[self.world.rank :: self.world.size].tolist()

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)


def _metric(value: float) -> float:
    return -math.inf if value is None or not math.isfinite(value) else value


def _optimizer(model: HierarchicalClassifier, config: RunConfig, head_only: bool) -> torch.optim.Optimizer:
    settings = config.train
    groups = [{"params": list(model.head.parameters()), "lr": settings.learning_rate}]
    encoder_parameters = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_parameters and not head_only:
        groups.append(
            {
                "params": encoder_parameters,
                "lr": settings.encoder_learning_rate or settings.learning_rate / 10,
            }
        )
    # The fused kernels update every parameter in one pass: for the 20 x 3.3M-parameter heads of a
    # MobileNetV2 run the optimizer step is ~10x faster than torch's default (scripts/bench_training.py).
    fused = all(p.dtype.is_floating_point for group in groups for p in group["params"])
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, weight_decay=settings.weight_decay, fused=fused)
    if settings.optimizer == "adam":
        # Adam's L2 is coupled to the gradient, and the loss is a mean over the H heads: each head's
        # gradient is 1/H of a lone head's, so the heads get weight_decay / H, which keeps a head's
        # loss-to-decay balance that of a single-head model (the HMC study, docs/results/hmc.md).
        # The shared encoder's gradient is the heads' mean, of a single model's size: its L2 stays.
        # AdamW's decay is decoupled from the gradient and needs neither.
        groups[0]["weight_decay"] = settings.weight_decay / model.head.heads
        return torch.optim.Adam(groups, weight_decay=settings.weight_decay, fused=fused)
    raise ValueError(f"train.optimizer must be adamw or adam, got {settings.optimizer!r}")


def _scheduler(optimizer, config: RunConfig):
    if config.train.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.train.epochs, 1))
    if config.train.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"train.scheduler must be cosine or none, got {config.train.scheduler!r}")


def train(
    config: RunConfig,
    resume: bool = False,
    stop_after: int | None = None,
    *,
    data: PreparedData | None = None,
    train_subset: np.ndarray | None = None,
    reference_counts: np.ndarray | None = None,
    save_checkpoints: bool = True,
) -> dict:
    """Train as configured; returns the final metrics (also written to ``metrics.json``).

    ``resume`` continues from ``last.pt`` in the run folder.  ``stop_after`` ends this call after that
    many epochs (a time-boxed session; resume later), returning the latest validation metrics.

    For studies that train many cells on one dataset (``seabed-hmc ablate``): ``data`` reuses prepared
    data (images already checked), ``train_subset`` trains on those positions of the training split
    only (the node weights then come from the subset), ``reference_counts`` fixes the training counts
    that define the rare nodes of the metrics (default: the subset's), and ``save_checkpoints=False``
    keeps the best weights in memory and writes no ``.pt`` files.
    """
    device = resolve_device(config.train.device, "train.device")
    world = distributed.setup(device)  # under torchrun: join the group (NCCL on GPUs, gloo on the CPU)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with run_status(out, world.main, save_checkpoints and not resume) as status:
        results = _train(
            config,
            device,
            world,
            out,
            resume,
            stop_after,
            data,
            train_subset,
            reference_counts,
            save_checkpoints,
        )
        status["outcome"] = "stopped" if "stopped_after_epoch" in results else "finished"
        return results


RUN_REPORTS = (
    "reliability.png",
    "metrics.json",
    "nodes.csv",
    "problems.csv",
    SCORES_FILE,
)  # written only by a run that finished


@contextmanager
def run_status(out: Path, main: bool, fresh: bool):
    """``status.json`` in the run folder says whether the run is ``running``, ``finished``, ``stopped``
    (``stop_after``: resume it), ``failed`` (with the error) or ``interrupted``, with the command and
    the times.  A fresh run (not resumed) first removes an earlier run's reports (``RUN_REPORTS``), so a
    folder never shows a failed run beside another run's metrics.  Yields the status record; set its
    ``outcome`` to end with another status than ``finished``."""
    if not main:
        yield {}
        return
    status = {"status": "running", "command": shlex.join(sys.argv), "started": _now()}
    if fresh:
        for name in RUN_REPORTS:
            (out / name).unlink(missing_ok=True)
    write_text_atomic(out / STATUS_FILE, json.dumps(status, indent=2))
    try:
        yield status
    except BaseException as error:
        failed = "failed" if isinstance(error, Exception) else "interrupted"
        status.pop("outcome", None)
        status.update(status=failed, error=f"{type(error).__name__}: {error}", ended=_now())
        write_text_atomic(out / STATUS_FILE, json.dumps(status, indent=2))
        raise
    status.update(status=status.pop("outcome", "finished"), ended=_now())
    write_text_atomic(out / STATUS_FILE, json.dumps(status, indent=2))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _train(
    config, device, world, out, resume, stop_after, data, train_subset, reference_counts, save_checkpoints
):
    if world.main:
        save_config(config, out / "config.yaml")
    torch.use_deterministic_algorithms(config.train.deterministic, warn_only=True)
    seed_everything(config.train.seed)

    data, model, norm, inputs, train_rows = _prepare(config, device, world, data, train_subset)
    hierarchy = data.hierarchy
    train_inputs = inputs["train"]
    train_counts, _ = node_frequencies(hierarchy, train_inputs.targets, train_inputs.mask)
    metric_counts = train_counts if reference_counts is None else np.asarray(reference_counts)
    loss_fn = configured_loss(config, hierarchy, train_inputs).to(device)
    net, optimizer, scheduler = _optimisation(config, model, train_inputs, world, device)

    start_epoch, best, best_state = 0, -math.inf, None
    if resume and save_checkpoints and (out / "last.pt").exists():
        start_epoch, best = _resume(out / "last.pt", model, optimizer, scheduler)

    record = _record(config, model, data, norm, train_rows, train_counts, metric_counts)
    checkpoints = Checkpoints(out, config.train.checkpoint_minutes)
    log_path = out / "log.csv"
    if start_epoch == 0 and log_path.exists() and world.main:
        log_path.unlink()
    for epoch in range(start_epoch, config.train.epochs):
        seed_everything(config.train.seed, epoch + 1)
        started = time.perf_counter()
        train_loss = train_epoch(
            model, loss_fn, optimizer, train_inputs, config, epoch, data.problems, net, world
        )
        scheduler.step()
        stopping = (
            stop_after is not None
            and epoch + 1 - start_epoch >= stop_after
            and epoch + 1 < config.train.epochs
        )
        if not world.main:  # rank 0 validates, selects and writes; the weights are the same everywhere
            if stopping:
                return {}
            continue
        val = inputs["val"]
        metrics = score_split(model, val, config, hierarchy, metric_counts).metrics
        score = _metric(metrics.get(config.train.selection_metric))
        improved = score > best
        best = max(best, score)
        if not save_checkpoints:
            if improved or best_state is None:
                best_state = {"epoch": epoch, "model": clone_weights(model.state_dict())}
            _append_csv(log_path, _log_row(epoch, train_loss, started, improved, metrics))
            continue
        flush = checkpoints.due() or stopping or epoch + 1 == config.train.epochs
        if improved:
            checkpoints.note_best(epoch, model, metrics, best, copy=not flush)
        if flush:
            state = dataclasses.replace(
                record,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                epoch=epoch,
                best_metric=best,
                metrics=metrics,
            )
            checkpoints.write(state)
        _append_csv(log_path, _log_row(epoch, train_loss, started, improved, metrics))
        log.info("epoch %d: loss %.4f, val AU(PRC) %.4f", epoch, train_loss, metrics["au_prc"])
        if stopping:
            return {"stopped_after_epoch": epoch, "val": metrics}
    if not world.main:
        world.barrier()  # wait for rank 0's final evaluation, then leave
        return {}
    results = finish(model, inputs, hierarchy, metric_counts, data, config, out, best_state, train_counts)
    world.barrier()
    return results


def _prepare(config: RunConfig, device, world: World, data: PreparedData | None, train_subset):
    """The data, the model on its device, the input normalisation, every split's inputs (features
    when the encoder is frozen and cached) and the training rows (of ``train_subset`` when given)."""
    data = data if data is not None else prepare_data(config.data, config.train.seed)
    model = build_model(config, data.hierarchy).to(device)
    if config.train.channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    train_rows = data.splits["train"]
    norm = normalisation(config, model, data.table.frame["image"].iloc[train_rows].tolist())
    model.set_input_normalisation(norm["mean"], norm["std"])  # for uint8 images (data.normalise_on_device)
    if config.encoder.batchnorm_refit:
        refit_batchnorm(model, config, data, norm)
    if config.train.compile:
        model.encoder.compile()  # in place: the weights and checkpoint keys stay as they are
    if not world.main:
        world.barrier()  # rank 0 computes (and caches) the features first; the others then read them
    inputs = build_inputs(config, model, data, norm)
    if world.main:
        world.barrier()
    if train_subset is not None:
        inputs["train"] = inputs["train"].select(train_subset)
        train_rows = train_rows[inputs["train"].rows]
        if len(inputs["train"]) == 0:
            raise ValueError("the training subset is empty")
    return data, model, norm, inputs, train_rows


def configured_loss(config: RunConfig, hierarchy, train_inputs: Inputs):
    """The configured loss, its node weights from the training rows' labels."""
    return build_loss(
        config.loss.name,
        hierarchy,
        train_inputs.targets,
        train_inputs.mask,
        uncertainty=config.loss.uncertainty,
        weight_target=config.loss.weight_target,
        omega=config.loss.omega,
        frequency=config.loss.frequency,
        focal_min=config.loss.focal_min,
        k=config.loss.k,
        reduction=config.loss.reduction,
    )


def _optimisation(config: RunConfig, model, train_inputs: Inputs, world: World, device):
    """What a step trains (the heads alone on cached features; wrapped for DDP under torchrun), the
    optimizer and the learning-rate schedule."""
    head_only = train_inputs.features is not None
    if head_only:
        # heads on cached features: the same large gradient and activation blocks every step (131 MB
        # per layer for 20 heads of 1,280), reused from the heap instead of mapped and page-faulted
        # in again: 8,237 -> 21 faults and 368 -> 326 ms per step (1 thread, scripts/bench_heads.py)
        serve_large_blocks_from_heap()
    net = model.head if head_only else model
    if world.distributed:  # gradients averaged across ranks; checkpoints hold the unwrapped model
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, output_device=device.index)
    optimizer = _optimizer(model, config, head_only)
    return net, optimizer, _scheduler(optimizer, config)


def _resume(last: Path, model, optimizer, scheduler) -> tuple[int, float]:
    """Load ``last.pt``'s weights and optimizer and scheduler states; the next epoch and the best score."""
    state = read_model(last)
    model.load_state_dict(state.model)
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    log.info("resuming %s from epoch %d", last.parent, state.epoch + 1)
    return state.epoch + 1, state.best_metric


def _record(
    config: RunConfig, model, data: PreparedData, norm: dict, train_rows, train_counts, metric_counts
):
    """The checkpoint record every epoch's ``last.pt`` and ``best.pt`` share (weights added per write)."""
    return ModelCheckpoint(
        hierarchy=data.hierarchy.to_dict(),
        encoder=model.encoder.description,
        normalisation=norm,
        config=config_to_dict(config),
        model={},
        train_indices=torch.as_tensor(train_rows),
        train_images=data.table.frame["image"].iloc[train_rows].tolist(),
        train_counts=torch.as_tensor(train_counts),
        metric_counts=torch.as_tensor(metric_counts),
        image_source=str(data.table.source),
    )


def _log_row(epoch: int, train_loss: float, started: float, improved: bool, metrics: dict) -> dict:
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "seconds": time.perf_counter() - started,
        "best": improved,
    }
    row.update({f"val_{k}": metrics[k] for k in ("au_prc", "f1_all", "recall_all", "rare_node_recall")})
    return row


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
