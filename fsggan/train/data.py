"""Training batches: the resumable sharded sampler, the loaders, the training and
validation sets of the data config, and occlusion of whole batches on the device.

* :func:`setup_data` -> (train_set, val_set, data_state, sampler, loader, val): both stages' data;
* :class:`ShardedBatchSampler` (data order from (seed, epoch), resumable mid-epoch),
  :func:`epoch_batches` (an endless ``(epoch, batch_index, batch)`` stream) and
  :func:`device_batches` (the same on the device, occluded there if so configured);
* :func:`occlude_batch` (``data.occlude_on: device``);
* :func:`grey_batch` (``data.grey_share``: a share of the faces made greyscale).
"""

from __future__ import annotations

import os
import signal
import warnings
from dataclasses import fields
from typing import Iterator

import numpy as np
import torch

from fsggan.config import ConfigError, from_dict, read_layers
from fsggan.data import PrepareConfig, item_rng, make_occluded_dataset
from fsggan.images import LUMA

from .runtime import Env, TrainingError, to_device
from .state import located, relocated

__all__ = ["ShardedBatchSampler", "EpochItems", "epoch_batches", "device_batches", "setup_data", "make_loader", "load_all",
           "occlude_batch", "grey_batch"]


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Index batches for one process: the order depends only on (seed, epoch).

    Epoch ``e`` is a permutation of the dataset drawn from ``seed`` and ``e``, cut into
    global batches of ``batch_size`` (the incomplete last one is dropped); process
    ``rank`` takes its contiguous ``batch_size / world_size`` share of each global batch,
    so the global batches are the same whatever the number of processes (the job of
    DistributedSampler, plus resuming in the middle of an epoch: ``set_epoch(e, start)``
    skips the first ``start`` batches without loading them).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise TrainingError(f"train.batch_size ({batch_size}) must be divisible by the number of "
                                f"processes ({world_size})")
        if num_items < batch_size:
            raise TrainingError(f"the training set has {num_items} images, fewer than one batch ({batch_size})")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.local = rank, batch_size // world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.num_items // self.batch_size - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        """Each batch as ``(epoch, index)`` pairs: the epoch travels with every item, so
        persistent loader workers (which keep their copy of the dataset from the first epoch)
        draw the occlusions of the right epoch (:class:`EpochItems`)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=g).tolist()
        for b in range(self.start, self.num_items // self.batch_size):
            first = b * self.batch_size + self.rank * self.local
            yield [(self.epoch, i) for i in order[first:first + self.local]]


class EpochItems(torch.utils.data.Dataset):
    """A dataset with ``set_epoch`` read by ``(epoch, index)``: the epoch is set on the copy
    the reading process holds (a loader worker's), so its items are those of that epoch
    whether or not the workers outlive the epoch (``data.persistent_workers``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch") and getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def epoch_batches(loader, sampler: ShardedBatchSampler, dataset, epoch: int, batch: int):
    """Yield ``(epoch, batch_index, batch)`` forever, starting at (epoch, batch).

    An iterator over ``loader`` each epoch (with persistent workers it reuses the same
    processes; the epoch reaches them with every index, :class:`EpochItems`).
    """
    while True:
        sampler.set_epoch(epoch, batch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for item in loader:
            yield epoch, batch, item
            batch += 1
        epoch, batch = epoch + 1, 0


def device_batches(loader, sampler: ShardedBatchSampler, dataset, pos: tuple[int, int], data, train, env: Env):
    """Yield ``(epoch, batch_index, batch)`` forever from ``pos`` = (epoch, batch), each batch
    on the device (``train.channels_last``) - and, with ``data.occlude_on: device``,
    occluded there (:func:`occlude_batch`, from the host copy of the indices and landmarks,
    so that drawing the occluders never waits for the GPU)."""
    for epoch, index, batch in epoch_batches(loader, sampler, dataset, *pos):
        b = to_device(batch, env, train.channels_last)
        b = occlude_batch(dataset, b, epoch, host=batch) if data.occlude_on == "device" else b
        yield epoch, index, grey_batch(b, batch["index"], dataset.seed, epoch, data.grey_share)


def setup_data(data, train, *, env: Env, ckpt: dict | None):
    """Both stages' data: ``(train_set, val_set, data_state, sampler, loader, val)``.

    data: the ``data`` section (:class:`fsggan.train.config.TrainDataSection`); train: ``train``.
    train_set draws new occlusions every epoch (``set_epoch``; reproducible from (seed,
    epoch, index)) and is sharded over the DDP ranks by ``sampler`` (resumable order from
    ``train.seed``); val_set is a fixed list of ``data.val_images`` occluded faces spread
    over the validation identities (occlusions from ``data.val_seed``, identical in every
    run and at every validation); ``val`` is val_set loaded into memory on rank 0 (None
    elsewhere). data_state goes into every checkpoint: ``{"data_yaml": the data YAML
    (data.config) as read at the start of the run, "origin": the directory the run was
    started from (relative paths of its config are relative to it)}``.

    A resumed run (``ckpt``) uses the data config stored in its checkpoint, so editing the
    data YAML later cannot change a run half-way; a warning says when the given ``data``
    or the data YAML differ from it. Nothing is written here (the run directory does not
    exist yet on a fresh start: :func:`fsggan.train.state.prepare_run_dir`).
    """
    prep = data.prepare_config()
    origin = os.getcwd()  # relative paths of the config are relative to it
    if ckpt is None:
        data_yaml = read_layers(data.config) if data.config else None
    else:  # the stored data config, its paths relative to where the run started; the YAML is not read again
        stored = ckpt["config"]["data"]
        stored_prep = from_dict(PrepareConfig, {f.name: stored[f.name] for f in fields(PrepareConfig)})
        origin = ckpt.get("origin")
        try:  # only to warn when it was edited since: a YAML that is gone (another directory) is fine
            now = read_layers(located(data.config, origin)) if data.config else None
        except ConfigError:
            now = None
        data_yaml = ckpt.get("data_yaml", now)
        now = data_yaml if now is None else now
        if env.is_main and (stored_prep != prep or now != data_yaml):
            warnings.warn(f"the data config ({data.config or 'data section'}) differs from the one stored in the "
                          f"checkpoint; the run continues with the stored one", stacklevel=2)
        prep = relocated(stored_prep, origin)
    train_set = make_occluded_dataset(prep, "train", seed=train.seed, occlude=data.occlude_on == "workers",
                                      clean_share=data.clean_share)
    if data.max_images:
        train_set.records = train_set.records[:data.max_images]
    val_set = make_occluded_dataset(prep, "val", seed=data.val_seed)
    if len(val_set.records) > data.val_images:  # evenly over the identity-sorted records
        idx = np.linspace(0, len(val_set.records) - 1, data.val_images).round().astype(int)
        val_set.records = [val_set.records[i] for i in idx]
    val_set.set_epoch(0)
    sampler = ShardedBatchSampler(len(train_set), train.batch_size, train.seed, env.rank, env.world_size)
    loader = make_loader(train_set, sampler, data, env)
    val = load_all(val_set, data.num_workers) if env.is_main else None
    return train_set, val_set, {"data_yaml": data_yaml, "origin": origin}, sampler, loader, val


def occlude_batch(dataset, batch: dict, epoch: int, host: dict | None = None) -> dict:
    """``data.occlude_on: device``: occlude a batch of clean faces where it lies (GPU),
    image for image the same as the workers would (same per-item generators). ``host``: the
    same batch before it was moved, whose indices and landmarks are read without a device
    synchronisation."""
    meta = batch if host is None else host
    rngs = [item_rng(dataset.seed, epoch, i) for i in meta["index"].tolist()]
    res = dataset.synthesizer(batch["clean"], meta["landmarks"], rngs)
    occluded, mask = res.occluded, res.mask
    if dataset.clean_share > 0:  # data.clean_share: these faces stay un-occluded, as in the workers
        keep = torch.tensor([dataset.kept_clean(j, epoch) for j in meta["index"].tolist()])
        keep = keep.view(-1, 1, 1, 1).to(occluded.device, non_blocking=True)  # no index tensor: no sync
        occluded, mask = torch.where(keep, batch["clean"], occluded), torch.where(keep, 0.0, mask)
    return {**batch, "occluded": occluded, "mask": mask}


def grey_batch(batch: dict, indices: torch.Tensor, seed: int, epoch: int, share: float) -> dict:
    """``data.grey_share`` (beyond the paper): item ``i`` of ``epoch``, drawn from (seed, epoch,
    i) apart from its occlusion, has its clean and occluded faces turned to greyscale
    (luminance in all three channels, the occluder too, as in a black-and-white photo), so
    that G learns a grey face is a face, not an occluder. The mask is unchanged."""
    if share <= 0:
        return batch
    grey = [np.random.default_rng([seed, int(epoch), int(i), 0x6E7]).random() < share for i in indices.tolist()]
    if not any(grey):
        return batch
    keep = torch.tensor(grey).view(-1, 1, 1, 1).to(batch["clean"].device, non_blocking=True)
    weights = torch.tensor(LUMA, device=batch["clean"].device).view(1, 3, 1, 1)
    out = dict(batch)
    for key in ("clean", "occluded"):
        x = batch[key]
        out[key] = torch.where(keep, (x * weights).sum(1, keepdim=True).expand_as(x), x)
    return out


def make_loader(dataset, sampler: ShardedBatchSampler, data, env: Env) -> torch.utils.data.DataLoader:
    """DataLoader over ``sampler``'s batches: workers, pinned memory on CUDA.

    ``data.persistent_workers`` (default on) keeps the worker processes from one epoch to the
    next: a new iterator otherwise starts ``num_workers`` processes, each re-importing torch
    and re-opening the occluder bank, and the GPU waits for their first batches every epoch.

    It has its own generator, so creating an iterator never draws from the global torch
    RNG (which would make a resumed run differ from an uninterrupted one), and its workers
    ignore Ctrl-C, so that the main process can finish its step and save a checkpoint.
    """
    workers = data.num_workers > 0
    return torch.utils.data.DataLoader(
        EpochItems(dataset), batch_sampler=sampler, num_workers=data.num_workers,
        pin_memory=data.pin_memory and env.device.type == "cuda",
        generator=torch.Generator().manual_seed(0), worker_init_fn=_ignore_sigint,
        prefetch_factor=4 if workers else None, persistent_workers=workers and data.persistent_workers)


def _ignore_sigint(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def load_all(dataset, num_workers: int = 0, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Load a (small) dataset into memory as one dict of stacked tensors."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list] = {}
    for b in loader:
        for k, v in b.items():
            if isinstance(v, torch.Tensor):
                parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}
