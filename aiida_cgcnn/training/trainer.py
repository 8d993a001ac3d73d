"""The trainer: one code path for the command line, CalcJobs on remote computers and scripts.

Deterministic for a given seed: the epoch's shuffle and dropout draw from (seed, epoch), so a run
resumed from a checkpoint continues exactly as an uninterrupted one. Distributed data-parallel when
started by ``torchrun`` (``WORLD_SIZE`` > 1): each process trains on its shard of every epoch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, DatasetError
from ..graph.batch import edge_capped_batches
from ..graph.crystal_graph import GraphSettings
from ..graph.features import atom_feature_table
from ..models.registry import build_model, model_defaults
from .checkpoint import load_checkpoint, save_checkpoint, write_atomically
from .dataset import CrystalDataset, Skipped
from .metrics import classification_metrics, per_target_metrics, regression_metrics
from .prepare import prepare_graphs

__all__ = [
    "CONTINUABLE",
    "LossDivergedError",
    "TimeBudgetExceeded",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "split_indices",
]


class LossDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class TimeBudgetExceeded(RuntimeError):
    """Not raised to callers; marks a run stopped before its time budget ran out."""


@dataclass
class TrainConfig:
    """Training settings; stored in every checkpoint.

    Attributes
    ----------
    epochs, batch_size
        Batch size is per process under ``torchrun``.
    optimizer
        ``adam``, ``adamw`` or ``sgd`` (``momentum`` for SGD).
    scheduler
        ``none``, ``cosine`` (per batch, to zero), ``onecycle`` (per batch) or ``step``
        (multiply by ``lr_gamma`` at each epoch in ``lr_milestones``).
    loss
        ``mse``, ``l1`` or ``huber`` for regression, on standardised targets; classification
        always uses cross-entropy.
    train_ratio, val_ratio, test_ratio
        Random split (the paper's 60/20/20); a ratio of 0 gives an empty part, never the whole set.
    patience
        Early stopping: epochs without validation improvement before stopping (None: never).
    time_budget, time_margin
        Seconds allowed for the whole run and the margin kept before it: training stops cleanly
        once the next epoch would not finish inside ``time_budget - time_margin``.
    loss_per_atom
        Sum pooling only: the loss compares values per atom, so small and large cells weigh alike
        (by default it compares values per cell, which weighs large cells more).
    stop_epoch
        Pause after this many epochs in all: the run, its learning-rate schedule included, stays
        planned for ``epochs``, and a resume with a later ``stop_epoch`` (or none) goes on exactly as
        if it had not stopped (the hyperparameter search's rungs).
    max_edges_per_batch
        Also cap the graph edges of a batch (``batch_size`` stays the cap on crystals), so that
        batches of large cells fit in memory (ALIGNN's line graph has about 12 edges per edge).
    """

    epochs: int = 100
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    loss: str = "mse"
    train_ratio: float = 0.6
    val_ratio: float = 0.2
    test_ratio: float = 0.2
    seed: int = 0
    patience: int | None = None
    time_budget: float | None = None
    time_margin: float = 60.0
    grad_clip: float | None = None
    deterministic: bool = False
    max_edges_per_batch: int | None = None
    loss_per_atom: bool = False
    stop_epoch: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            valid = sorted(cls.__dataclass_fields__)
            raise ConfigError(f"unknown training settings {sorted(unknown)}; valid ones are {valid}")
        return cls(**data)

    def validate(self) -> None:
        """Raise :class:`~aiida_cgcnn.errors.ConfigError` naming the first bad setting (its message
        starts with the setting's name)."""
        for name, kinds in _SETTING_TYPES.items():
            value = getattr(self, name)
            if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
                expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise ConfigError(f"{name} must be {expected}, not {value!r}")
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.optimizer in ("adam", "adamw", "sgd"), "optimizer must be adam, adamw or sgd"),
            (
                self.scheduler in ("none", "cosine", "onecycle", "step"),
                "scheduler must be none, cosine, onecycle or step",
            ),
            (self.loss in ("mse", "l1", "huber"), "loss must be mse, l1 or huber"),
            (self.lr > 0, "lr must be positive"),
            (min(self.train_ratio, self.val_ratio, self.test_ratio) >= 0, "split ratios must be >= 0"),
            (self.train_ratio > 0, "train_ratio must be positive"),
            ((self.max_edges_per_batch or 1) >= 1, "max_edges_per_batch must be >= 1"),
            (self.stop_epoch is None or self.stop_epoch >= 1, "stop_epoch must be >= 1"),
            (self.train_ratio + self.val_ratio + self.test_ratio <= 1 + 1e-9, "split ratios sum above 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


_NUMBER = (int, float)
_SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "epochs": (int,),
    "batch_size": (int,),
    "optimizer": (str,),
    "lr": _NUMBER,
    "weight_decay": _NUMBER,
    "momentum": _NUMBER,
    "scheduler": (str,),
    "lr_milestones": (list, tuple),
    "lr_gamma": _NUMBER,
    "loss": (str,),
    "train_ratio": _NUMBER,
    "val_ratio": _NUMBER,
    "test_ratio": _NUMBER,
    "seed": (int,),
    "patience": (int, type(None)),
    "time_budget": (*_NUMBER, type(None)),
    "time_margin": _NUMBER,
    "grad_clip": (*_NUMBER, type(None)),
    "deterministic": (bool,),
    "max_edges_per_batch": (int, type(None)),
    "loss_per_atom": (bool,),
    "stop_epoch": (int, type(None)),
}

#: Settings a resumed run takes from its new settings rather than from its checkpoint: how long it goes
#: on, and what the restart handlers change (batch size and edge cap after running out of memory, the
#: learning rate after a divergence). The learning-rate schedule is replayed for them (see ``_restore``).
CONTINUABLE = (
    "epochs",
    "stop_epoch",
    "patience",
    "time_budget",
    "time_margin",
    "batch_size",
    "max_edges_per_batch",
    "lr",
)
_SCHEDULE_SETTINGS = ("epochs", "batch_size", "max_edges_per_batch", "lr")
#: Model settings derived from the data, not chosen by the user.
_DERIVED_MODEL_SETTINGS = ("out_features", "classification", "extra_features")


@dataclass
class TrainResult:
    output_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    metrics: dict[str, Any]
    stopped_reason: str  # "completed", "early_stopping", "time_budget" or "paused" (stop_epoch)
    skipped: list[Skipped]
    epochs_run: int


@dataclass
class _RunState:
    """Where a run stands: its epoch records, best validation score and epoch, last epoch trained."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int = -1
    epoch: int = -1


def split_indices(n: int, train: float, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Random train/val/test split; val and test get round(ratio * n) structures, train the rest when the
    ratios sum to one (else round(train * n)), at least 1."""
    permutation = np.random.default_rng(seed).permutation(n)
    n_val = round(val * n)
    n_test = round(test * n)
    n_train = min(round(train * n), n - n_val - n_test)
    if abs(train + val + test - 1.0) < 1e-9:
        n_train = n - n_val - n_test  # ratios summing to one use every structure: rounding goes to training
    if n_train < 1:
        raise DatasetError(f"{n} structures leave no training set with ratios {train}/{val}/{test}")
    return {
        "train": np.sort(permutation[:n_train]),
        "val": np.sort(permutation[n_train : n_train + n_val]),
        "test": np.sort(permutation[n_train + n_val : n_train + n_val + n_test]),
    }


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    return torch.device(device)


def _full_model_settings(config: dict[str, Any]) -> dict[str, Any]:
    architecture = config.get("architecture", "cgcnn")
    chosen = {k: v for k, v in config.items() if k not in _DERIVED_MODEL_SETTINGS}
    return {**model_defaults(architecture), **chosen, "architecture": architecture}


def continued_settings(
    state: dict[str, Any],
    source: str,
    model_config: dict[str, Any] | None,
    train_config: TrainConfig | dict[str, Any] | None,
    graph_settings: GraphSettings | None,
    atom_properties: list[str] | None,
) -> tuple[dict[str, Any], TrainConfig, GraphSettings, list[str]]:
    """The settings of a run resumed from the checkpoint ``state`` (read from ``source``).

    The checkpoint's settings, with the :data:`CONTINUABLE` ones taken from ``train_config``: a
    finished run goes on for more epochs. Any other setting given must equal the checkpoint's
    (a different model, split, batch size or schedule is another run): a ConfigError names those that
    differ.
    """
    given = asdict(train_config) if isinstance(train_config, TrainConfig) else dict(train_config or {})
    TrainConfig.from_dict(given)  # names unknown keys
    saved = {**asdict(TrainConfig()), **state["train_config"]}
    differ = [
        f"{k} {saved[k]!r} -> {v!r}" for k, v in given.items() if k not in CONTINUABLE and saved[k] != v
    ]
    saved_model = _full_model_settings(dict(state["model_config"]))
    if model_config:
        given_model = _full_model_settings(model_config)
        differ += [
            f"model {k} {saved_model.get(k)!r} -> {given_model.get(k)!r}"
            for k in sorted(set(saved_model) | set(given_model))
            if saved_model.get(k) != given_model.get(k)
        ]
    saved_graph = GraphSettings.from_dict(state["graph_settings"])
    if graph_settings is not None and graph_settings.to_dict() != saved_graph.to_dict():
        differ.append(f"graph {saved_graph.to_dict()} -> {graph_settings.to_dict()}")
    saved_properties = list(state["atom_properties"])
    if atom_properties is not None and list(atom_properties) != saved_properties:
        differ.append(f"atom_properties {saved_properties or 'all'} -> {list(atom_properties)}")
    if differ:
        raise ConfigError(
            f"cannot resume from {source!r} with other settings: {'; '.join(differ)}. Only "
            f"{', '.join(CONTINUABLE)} may change when a run goes on; leave the others out (the "
            "checkpoint's are used), or start a new run from its weights (--init-from, fine-tuning)"
        )
    saved.update({k: given[k] for k in CONTINUABLE if k in given})
    saved["stop_epoch"] = given.get("stop_epoch")  # a pause holds for one run, never for its continuation
    return dict(state["model_config"]), TrainConfig.from_dict(saved), saved_graph, saved_properties


def _check_continuation(state: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a continuation that would train no epoch or stop at once."""
    done = state["epoch"] + 1
    if config.epochs < done:
        raise ConfigError(
            f"epochs must be at least the {done} the checkpoint has trained, not {config.epochs}; "
            "give more epochs to continue"
        )
    best_epoch = state.get("best_epoch", -1)
    if (
        config.patience is not None
        and done < config.epochs
        and state["epoch"] - best_epoch >= config.patience
    ):
        raise ConfigError(
            f"patience {config.patience}: the run stopped early, {state['epoch'] - best_epoch} epochs after "
            f"its best epoch {best_epoch}; continue with a larger patience"
        )


class Trainer:
    """Train a model on a :class:`CrystalDataset`; see :meth:`fit`.

    Parameters
    ----------
    dataset
        Structures and targets.
    output_dir
        Where ``best.pt``, ``last.pt``, ``metrics.json``, ``learning_curve.csv``,
        ``test_predictions.csv`` and ``skipped.json`` are written.
    model_config
        ``architecture`` plus hyperparameters (see :func:`~aiida_cgcnn.models.registry.build_model`).
    train_config
        :class:`TrainConfig` or a dict of its fields.
    graph_settings
        :class:`GraphSettings`.
    skip_invalid
        Leave out structures whose graph cannot be built, instead of failing.
    cache_dir
        Where graphs are cached (under a key of structures and settings).
    resume
        A ``last.pt`` to continue from, from its next epoch: same dataset and settings, except those in
        :data:`CONTINUABLE` (more epochs continue a finished run; see :func:`continued_settings`).
    init_from
        A checkpoint whose weights start a fine-tuning run (new optimizer, schedule and split).
    skipped
        Structures already left out while loading the dataset, reported with the graph failures.
    """

    def __init__(
        self,
        dataset: CrystalDataset,
        output_dir: str | os.PathLike,
        model_config: dict[str, Any] | None = None,
        train_config: TrainConfig | dict[str, Any] | None = None,
        graph_settings: GraphSettings | None = None,
        skip_invalid: bool = False,
        cache_dir: str | os.PathLike | None = None,
        workers: int | None = None,
        device: str | None = "auto",
        resume: str | os.PathLike | None = None,
        init_from: str | os.PathLike | None = None,
        progress: bool | None = None,
        atom_properties: list[str] | None = None,
        skipped: list[Skipped] | None = None,
    ):
        self.start_time = time.monotonic()  # the time budget covers graph building too
        self.output_dir = Path(output_dir)
        self.resume_state = load_checkpoint(resume) if resume else None
        if self.resume_state is not None:
            model_config, train_config, graph_settings, atom_properties = continued_settings(
                self.resume_state, str(resume), model_config, train_config, graph_settings, atom_properties
            )
            if self.resume_state.get("dataset", {}).get("sha256") != dataset.sha256():
                raise DatasetError(
                    "cannot resume: the dataset differs from the one the checkpoint was trained on"
                )
        if isinstance(train_config, dict):
            train_config = TrainConfig.from_dict(train_config)
        self.config = train_config or TrainConfig()
        self.config.validate()
        self.graph_settings = graph_settings or GraphSettings()
        self.model_config = {"architecture": "cgcnn", **(model_config or {})}
        self.atom_properties = atom_properties
        if self.resume_state is None:
            self._check_model_settings()  # before the graphs are built: a typo costs no time
        else:
            _check_continuation(self.resume_state, self.config)
        self.rank, self.world = _distributed()
        self.device = resolve_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.init_from = init_from
        self.dataset_sha256 = dataset.sha256()
        self.dataset_size = len(dataset)
        self.prepared = self._prepare(dataset, skip_invalid, cache_dir, workers)
        self.prepared.skipped = list(skipped or []) + self.prepared.skipped

    # --- set-up -------------------------------------------------------------------------------

    def _prepare(self, dataset, skip_invalid, cache_dir, workers):
        if self.world > 1 and cache_dir is not None:
            # rank 0 builds and caches the graphs, the others read the cache
            if self.rank == 0:
                prepared = prepare_graphs(dataset, self.graph_settings, skip_invalid, cache_dir, workers)
            torch.distributed.barrier()
            if self.rank != 0:
                prepared = prepare_graphs(dataset, self.graph_settings, skip_invalid, cache_dir, workers)
            return prepared
        return prepare_graphs(dataset, self.graph_settings, skip_invalid, cache_dir, workers)

    def _check_model_settings(self) -> None:
        """Build the configured model once, so that a bad setting is a ConfigError naming it."""
        try:
            table = atom_feature_table(tuple(self.atom_properties) if self.atom_properties else None)
            with torch.random.fork_rng(devices=[]):  # leaves the caller's random state alone
                build_model({**self.model_config, "out_features": 1}, table)
        except ValueError as error:
            raise ConfigError(f"model settings {self.model_config}: {error}") from error

    @property
    def classification(self) -> bool:
        return self.prepared.dataset.task == "classification"

    def _out_features(self) -> int:
        data = self.prepared.dataset
        if self.classification:
            finite = data.targets[np.isfinite(data.targets)]
            return max(len(data.classes), int(finite.max()) + 1 if finite.size else 2, 2)
        return data.targets.shape[1]

    def _build_model(self, train_idx: np.ndarray) -> nn.Module:
        data = self.prepared.dataset
        config = dict(self.model_config)
        config["out_features"] = self._out_features()
        config["classification"] = self.classification
        config["extra_features"] = 0 if data.features is None else data.features.shape[1]
        self.model_config = config
        table = atom_feature_table(tuple(self.atom_properties) if self.atom_properties else None)
        torch.manual_seed(self.config.seed)
        model = build_model(config, table)
        head: Any = model.head
        if not self.classification:
            y = data.targets[train_idx]
            if head.pooling == "sum":
                y = y / data.num_atoms[train_idx, None]  # per-atom standardisation keeps sum exact
            std = y.std(axis=0)
            head.set_normalisation(torch.tensor(y.mean(axis=0)), torch.tensor(np.where(std > 0, std, 1.0)))
        if data.features is not None:
            f = data.features[train_idx]
            std = f.std(axis=0)
            head.set_normalisation(
                extra_mean=torch.tensor(f.mean(axis=0)), extra_std=torch.tensor(np.where(std > 0, std, 1.0))
            )
        if self.init_from:
            state = load_checkpoint(self.init_from)
            try:
                model.load_state_dict(state["state_dict"])
            except RuntimeError as error:
                raise CheckpointError(
                    f"cannot fine-tune from {str(self.init_from)!r}: its model is not the configured one "
                    f"({str(error).splitlines()[0]}); use the checkpoint's model settings "
                    f"{dict(state['model_config'])}"
                ) from None
        return model.to(self.device)

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
            )
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        return cls(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)

    def _scheduler(self, optimizer, steps_per_epoch: int, epoch_steps: list[int] | None = None):
        c = self.config
        # step at which each epoch starts; with an edge cap, epochs differ in their number of batches
        starts = np.cumsum([0, *(epoch_steps or [steps_per_epoch] * c.epochs)])
        total = max(int(starts[-1]), 1)
        if c.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        if c.scheduler == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=c.lr, total_steps=total)
        if c.scheduler == "step":
            milestones = [int(starts[m]) for m in c.lr_milestones if m < c.epochs]
            return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=c.lr_gamma)
        return None

    # --- loops --------------------------------------------------------------------------------

    def _loss(self, model: nn.Module, output, batch) -> torch.Tensor:
        if self.classification:
            return nn.functional.cross_entropy(output.prediction, batch.targets[:, 0].long())
        head: Any = model.head
        scale = head.target_std
        if head.pooling == "sum" and self.config.loss_per_atom:
            scale = scale * batch.num_atoms.float()[:, None]  # every crystal weighs alike, whatever its size
        elif head.pooling == "sum":
            scale = scale * batch.num_atoms.float().mean()
        error_pred, error_true = output.prediction / scale, batch.targets / scale
        if self.config.loss == "l1":
            return nn.functional.l1_loss(error_pred, error_true)
        if self.config.loss == "huber":
            return nn.functional.huber_loss(error_pred, error_true)
        return nn.functional.mse_loss(error_pred, error_true)

    def _shard(self, indices: np.ndarray) -> np.ndarray:
        if self.world == 1:
            return indices
        per_rank = len(indices) // self.world  # equal batch counts on every rank, or DDP hangs
        return indices[self.rank :: self.world][:per_rank]

    def _epoch_order(self, train: np.ndarray, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.config.seed, epoch]).permutation(train)

    def _train_batches(self, order: np.ndarray) -> list[np.ndarray]:
        """This process's batches of an epoch; with an edge cap, the epoch is cut into batches
        first and the batches are shared out (equal counts on every rank, or DDP hangs)."""
        c, graphs = self.config, self.prepared.graphs
        if c.max_edges_per_batch is None:
            batches = edge_capped_batches(self._shard(order), graphs.num_edges, c.batch_size)
            # shards have equal lengths, so a count rule merges alike on every rank
            lonely = len(batches[-1]) == 1 if self.world > 1 else graphs.num_atoms[batches[-1]].sum() < 2
            return _join_tail(batches) if len(batches) > 1 and lonely else batches
        batches = edge_capped_batches(order, graphs.num_edges, c.batch_size, c.max_edges_per_batch)
        batches = _join_single_atom_batches(batches, graphs.num_atoms)
        return batches[self.rank :: self.world][: len(batches) // self.world] if self.world > 1 else batches

    @torch.no_grad()
    def evaluate(self, model: nn.Module, indices: np.ndarray, batch_size: int | None = None):
        """Predictions and metrics of ``model`` on the structures at ``indices``."""
        data = self.prepared.dataset
        model.eval()
        outputs = []
        for batch in self.prepared.graphs.iter_batches(
            indices,
            batch_size or self.config.batch_size,
            data.targets,
            data.features,
            max_edges=self.config.max_edges_per_batch,
        ):
            out = model(batch.to(self.device)).prediction
            outputs.append(torch.softmax(out, -1) if self.classification else out)
        prediction = torch.cat(outputs).cpu().numpy().astype(np.float64) if outputs else np.zeros((0, 1))
        target = data.targets[indices]
        if len(indices) == 0:
            return prediction, {}
        if self.classification:
            return prediction, classification_metrics(prediction, target[:, 0])
        return prediction, regression_metrics(prediction, target)

    def _is_better(self, metrics: dict, best: float | None) -> tuple[bool, float]:
        if self.classification:
            score = -metrics["accuracy"]
        elif self.prepared.dataset.targets.shape[1] > 1 and np.isfinite(metrics["mae_over_mad"]):
            score = metrics["mae_over_mad"]  # targets in different units: compare unit-free errors
        else:
            score = metrics["mae"]
        return (best is None or score < best), score

    def fit(self) -> TrainResult:
        """Train, keeping the best model on the validation set; returns paths, metrics and why it stopped."""
        start_time = time.monotonic()
        split = self._split()
        model = self._build_model(split["train"])
        optimizer = self._optimizer(model)
        schedule = self._schedule_steps(split["train"])
        scheduler = self._scheduler(optimizer, *schedule)
        run = self._restore(model, optimizer, scheduler, schedule)
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._write_skipped()
        stopped = self._train_epochs(model, optimizer, scheduler, split, run)
        best_path = self.output_dir / "best.pt"
        metrics = self._finish(split, best_path, run.history, run.epoch, run.best_epoch, stopped, start_time)
        if self.world > 1:
            torch.distributed.barrier()
        return TrainResult(
            self.output_dir,
            best_path,
            self.output_dir / "last.pt",
            metrics,
            stopped,
            self.prepared.skipped,
            len(run.history),
        )

    # --- the steps of fit ----------------------------------------------------------------------

    def _split(self) -> dict[str, np.ndarray]:
        """The checkpoint's split when resuming, else a new one from the seed."""
        if self.resume_state is not None:
            return {k: np.asarray(v.numpy(), dtype=np.int64) for k, v in self.resume_state["split"].items()}
        c = self.config
        return split_indices(len(self.prepared.dataset), c.train_ratio, c.val_ratio, c.test_ratio, c.seed)

    def _schedule_steps(self, train: np.ndarray) -> tuple[int, list[int] | None]:
        """Batches per epoch, and with an edge cap the count of every epoch (they differ)."""
        c = self.config
        steps_per_epoch = max(math.ceil(len(self._shard(train)) / c.batch_size), 1)
        if c.max_edges_per_batch is None:
            return steps_per_epoch, None
        return steps_per_epoch, [
            len(self._train_batches(self._epoch_order(train, e))) for e in range(c.epochs)
        ]

    def _restore(self, model: nn.Module, optimizer, scheduler, schedule) -> _RunState:
        """Load the resumed checkpoint's weights, optimizer and schedule; a new run's state otherwise.

        A run continued with another number of epochs, batch size, edge cap or learning rate follows the
        learning-rate schedule of a run planned with the new settings from the start: the new schedule
        is replayed up to the checkpoint's epoch (so a cosine schedule decays to zero at the new last
        epoch). With unchanged settings the saved schedule is loaded as it is (bit-identical resume).
        """
        state = self.resume_state
        if state is None:
            return _RunState()
        model.load_state_dict(state["state_dict"])
        saved = {**asdict(TrainConfig()), **state["train_config"]}
        changed = any(saved[k] != getattr(self.config, k) for k in _SCHEDULE_SETTINGS)
        if scheduler is not None and state.get("scheduler_state") and changed:
            steps_per_epoch, epoch_steps = schedule
            done = state["epoch"] + 1
            steps = sum(epoch_steps[:done]) if epoch_steps else steps_per_epoch * done
            with warnings.catch_warnings():  # replaying the schedule steps no optimizer, on purpose
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
                for _ in range(steps):
                    scheduler.step()
            scheduled = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
            optimizer.load_state_dict(state["optimizer_state"])
            for group, values in zip(optimizer.param_groups, scheduled, strict=True):
                group.update(values)
        else:
            optimizer.load_state_dict(state["optimizer_state"])
            if scheduler is not None and state.get("scheduler_state"):
                scheduler.load_state_dict(state["scheduler_state"])
            elif changed:  # no schedule: the new learning rate holds from here
                for group in optimizer.param_groups:
                    group["lr"] = self.config.lr
        return _RunState(
            history=list(state["history"]),
            best_score=state.get("best_score"),
            best_epoch=state.get("best_epoch", -1),
            epoch=state["epoch"],
        )

    def _train_epochs(self, model: nn.Module, optimizer, scheduler, split, run: _RunState) -> str:
        """Train from the run's next epoch to the last, early stopping or the time budget; why it stopped."""
        c = self.config
        train_model: nn.Module = model
        if self.world > 1:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        bar = None
        if self.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.epochs, initial=run.epoch + 1, desc="training", unit="epoch")
        stopped = "completed"
        epoch_times: list[float] = []
        for epoch in range(run.epoch + 1, c.epochs):
            if c.stop_epoch is not None and epoch >= c.stop_epoch:
                stopped = "paused"
                break
            epoch_start = time.monotonic()
            if self._out_of_time(epoch_start, epoch_times):
                stopped = "time_budget"
                break
            record = self._train_epoch(model, train_model, optimizer, scheduler, split["train"], epoch)
            improved = self._validate(model, split["val"], record, run, epoch)
            record["time_s"] = time.monotonic() - epoch_start
            epoch_times.append(record["time_s"])
            run.history.append(record)
            run.epoch = epoch
            if self.rank == 0:
                self._save_checkpoints(model, optimizer, scheduler, split, run, improved)
            if bar is not None:
                bar.update(1)
                shown = ("train_loss", "val_mae", "val_accuracy")
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in shown})
            if c.patience is not None and epoch - run.best_epoch >= c.patience:
                stopped = "early_stopping"
                break
        if bar is not None:
            bar.close()
        return stopped

    def _out_of_time(self, now: float, epoch_times: list[float]) -> bool:
        """Whether the next epoch would not finish inside the time budget; every run trains one epoch."""
        c = self.config
        if c.time_budget is None or not epoch_times:
            return False
        return now - self.start_time + max(epoch_times) * 1.2 > c.time_budget - c.time_margin

    def _train_epoch(self, model, train_model, optimizer, scheduler, train: np.ndarray, epoch: int):
        """One pass over this process's share of the training set; the epoch's record."""
        c, data = self.config, self.prepared.dataset
        train_model.train()
        torch.manual_seed(c.seed * 100003 + epoch)
        total_loss, n_seen = 0.0, 0
        for indices in self._train_batches(self._epoch_order(train, epoch)):
            batch = self.prepared.graphs.batch(indices, data.targets, data.features)
            batch = batch.to(self.device, non_blocking=True)
            output = train_model(batch)
            loss = self._loss(model, output, batch)
            if not torch.isfinite(loss):
                raise LossDivergedError(
                    f"the training loss became {loss.item()} at epoch {epoch}; lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * batch.num_crystals
            n_seen += batch.num_crystals
        return {
            "epoch": epoch,
            "train_loss": total_loss / max(n_seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
        }

    def _validate(self, model, val: np.ndarray, record: dict[str, Any], run: _RunState, epoch: int) -> bool:
        """Validation metrics into ``record``; whether this epoch is the best so far (shared by all ranks)."""
        improved = False
        if self.rank == 0:
            if len(val):
                _, val_metrics = self.evaluate(model, val)
                record.update({f"val_{k}": v for k, v in val_metrics.items()})
                improved, score = self._is_better(val_metrics, run.best_score)
            else:
                improved, score = True, float(epoch)  # no validation set: the last epoch is best
            if improved:
                run.best_score, run.best_epoch = score, epoch
        if self.world > 1:
            shared: list[Any] = [improved, run.best_score, run.best_epoch]
            torch.distributed.broadcast_object_list(shared, src=0)
            improved, run.best_score, run.best_epoch = shared
        return improved

    def _save_checkpoints(self, model, optimizer, scheduler, split, run: _RunState, improved: bool) -> None:
        """last.pt (with optimizer and schedule, to resume), best.pt when improved, the learning curve."""
        payload = self._payload(model, split, run.history, run.epoch, run.best_score, run.best_epoch)
        resumable = {
            "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict() if scheduler else {},
        }
        # best.pt first: last.pt names the best epoch, so a job stopped between the two (a full disk, a
        # kill) leaves a last.pt that never points past the best.pt beside it
        if improved:
            save_checkpoint(self.output_dir / "best.pt", payload)
        save_checkpoint(self.output_dir / "last.pt", {**payload, **resumable})
        self._write_learning_curve(run.history)

    # --- outputs ------------------------------------------------------------------------------

    def _payload(self, model, split, history, epoch, best_score, best_epoch) -> dict[str, Any]:
        data = self.prepared.dataset
        return {
            "model_config": dict(self.model_config),
            "graph_settings": self.graph_settings.to_dict(),
            "atom_properties": list(self.atom_properties or []),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "targets": {
                "names": list(data.target_names),
                "units": list(data.units),
                "task": data.task,
                "classes": list(data.classes),
            },
            "feature_names": list(data.feature_names),
            # the descriptors among the features and their settings, so a Predictor computes them
            "descriptors": dict(data.metadata.get("descriptors") or {}),
            "train_config": asdict(self.config),
            "split": {k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in split.items()},
            "dataset": {"sha256": self.dataset_sha256, "size": self.dataset_size, "valid_size": len(data)},
            "history": history,
            "epoch": epoch,
            "best_score": best_score,
            "best_epoch": best_epoch,
        }

    def _write_skipped(self) -> None:
        if self.rank == 0:
            path = self.output_dir / "skipped.json"
            path.write_text(json.dumps([asdict(s) for s in self.prepared.skipped], indent=1))

    def _write_learning_curve(self, history: list[dict]) -> None:
        keys: list[str] = []
        for record in history:
            keys += [k for k in record if k not in keys]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        write_atomically(self.output_dir / "learning_curve.csv", text.getvalue())

    def _finish(self, split, best_path, history, epoch, best_epoch, stopped, start_time) -> dict[str, Any]:
        if self.rank != 0:
            return {}
        data = self.prepared.dataset
        metrics: dict[str, Any] = {
            "stopped_reason": stopped,
            "epochs_run": len(history),
            "last_epoch": epoch,
            "best_epoch": best_epoch,
            "num_train": len(split["train"]),
            "num_val": len(split["val"]),
            "num_test": len(split["test"]),
            "num_skipped": len(self.prepared.skipped),
            "targets": list(data.target_names),
            "units": list(data.units),
            "task": data.task,
            "wall_time_s": time.monotonic() - start_time,
        }
        if best_path.is_file():
            from ..predict import Predictor

            predictor = Predictor.from_checkpoint(best_path, device=self.device)
            model = predictor.model
            for part in ("train", "val", "test"):
                if len(split[part]):
                    prediction, part_metrics = self.evaluate(model, split[part])
                    metrics[part] = part_metrics
                    if not self.classification and len(data.target_names) > 1:
                        part_metrics["per_target"] = per_target_metrics(
                            prediction, data.targets[split[part]], list(data.target_names)
                        )
                    if part == "test":
                        self._write_predictions(split[part], prediction)
            # the best checkpoint carries the final metrics too
            state = load_checkpoint(best_path)
            state["metrics"] = metrics
            save_checkpoint(
                best_path,
                {
                    k: v
                    for k, v in state.items()
                    if k not in ("format", "format_version", "package_version", "created")
                },
            )
        write_atomically(self.output_dir / "metrics.json", json.dumps(metrics, indent=2, default=float))
        return metrics

    def _write_predictions(self, indices: np.ndarray, prediction: np.ndarray) -> None:
        data = self.prepared.dataset
        with open(self.output_dir / "test_predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            if self.classification:
                classes = data.classes or [str(i) for i in range(prediction.shape[1])]
                writer.writerow(["id", "target", "predicted", *[f"p_{c}" for c in classes]])
                for i, p in zip(indices, prediction, strict=True):
                    writer.writerow([data.ids[i], int(data.targets[i, 0]), int(p.argmax()), *p.tolist()])
            else:
                names = data.target_names
                writer.writerow(["id", *[f"{n}_true" for n in names], *[f"{n}_pred" for n in names]])
                for i, p in zip(indices, prediction, strict=True):
                    writer.writerow([data.ids[i], *data.targets[i].tolist(), *p.tolist()])


# BatchNorm over atoms cannot train on a batch of one atom (one 1-atom crystal): such a batch joins
# its neighbour, so datasets of elemental crystals train whatever their size modulo the batch size.
def _join_tail(batches: list[np.ndarray]) -> list[np.ndarray]:
    return [*batches[:-2], np.concatenate(batches[-2:])]


def _join_single_atom_batches(batches: list[np.ndarray], num_atoms: np.ndarray) -> list[np.ndarray]:
    joined: list[np.ndarray] = []
    for batch in batches:
        if joined and (num_atoms[batch].sum() < 2 or num_atoms[joined[-1]].sum() < 2):
            joined[-1] = np.concatenate([joined[-1], batch])
        else:
            joined.append(batch)
    return joined
