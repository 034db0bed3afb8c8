"""The records of an evaluation's ``metrics.json``: result rows, paired differences and the headline row.

Evaluation tasks (:mod:`eossl.evaluate.tasks`) produce them, the tables, figures and the pipeline report read them
by attribute. They live here, in the report layer, because the report reads the ``metrics.json`` of finished runs
and may not import the evaluation code (tests/test_layers.py); ``to_dict`` writes exactly the JSON of
``metrics.json`` (key order included) and ``from_dict`` reads it back. Its shape is fixed by
``metrics.schema.json`` beside this module.

A row in JSON::

    {"model": "pretrained resnet18 moco", "protocol": "linear", "k": "5", "dim": 512,
     "per_seed": [{"seed": 0, "n_train": 50, "overall_accuracy": 0.81, ...}, ...],
     "overall_accuracy": {"mean": 0.8, "ci95": 0.02, "n": 5}, "macro_f1": {...}, "kappa": {...},
     "metrics_all_seeds": {...}}

``dim`` only on frozen-feature rows; ``metrics_all_seeds`` (per-class metrics and the confusion matrix of every
seed's test predictions pooled, :func:`eossl.evaluate.metrics.classification_metrics`) only on the row at the
largest k. The scores are the task's: overall_accuracy, macro_f1 and kappa, and mean_iou for segmentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SCHEMA_FILE", "Headline", "PairedDifference", "ResultRow", "Score", "SeedScores"]

SCHEMA_FILE = Path(__file__).with_name("metrics.schema.json")
_ROW_KEYS = ("model", "protocol", "k", "dim", "per_seed", "metrics_all_seeds")


@dataclass(frozen=True)
class Score:
    """Mean of a score over seeds, half-width of its 95% CI (None from one seed) and the number of seeds."""

    mean: float
    ci95: float | None
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": self.ci95, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> Score:
        return cls(mean=d["mean"], ci95=d["ci95"], n=d["n"])


@dataclass(frozen=True)
class SeedScores:
    """The scores of one seed, in the task's order; ``n_train``: training samples (None in a paired difference)."""

    seed: int
    scores: dict[str, float]
    n_train: int | None = None

    def to_dict(self) -> dict:
        head = {"seed": self.seed} if self.n_train is None else {"seed": self.seed, "n_train": self.n_train}
        return {**head, **self.scores}

    @classmethod
    def from_dict(cls, d: dict) -> SeedScores:
        return cls(seed=d["seed"], n_train=d.get("n_train"),
                   scores={k: v for k, v in d.items() if k not in ("seed", "n_train")})


def _score(scores: dict[str, Score], name: str, where: str) -> Score:
    if name not in scores:
        raise KeyError(f"{where} has no score {name!r}; it has {', '.join(scores)}")
    return scores[name]


@dataclass(frozen=True)
class ResultRow:
    """One (model, protocol) at one k: per-seed scores and their summaries (see the module docstring)."""

    model: str
    protocol: str
    k: str
    per_seed: list[SeedScores]
    scores: dict[str, Score]
    dim: int | None = None
    metrics_all_seeds: dict | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.model, self.protocol, self.k

    def score(self, name: str) -> Score:
        """The summary of score ``name`` (KeyError naming the row's scores if it has none)."""
        return _score(self.scores, name, f"row {self.model} / {self.protocol} k={self.k}")

    @property
    def classes(self) -> list[str] | None:
        """The class names of the pooled metrics (rows at the largest k), else None."""
        return None if self.metrics_all_seeds is None else self.metrics_all_seeds["classes"]

    def to_dict(self) -> dict:
        out = {"model": self.model, "protocol": self.protocol, "k": self.k}
        if self.dim is not None:
            out["dim"] = self.dim
        out["per_seed"] = [s.to_dict() for s in self.per_seed]
        out.update({name: s.to_dict() for name, s in self.scores.items()})
        if self.metrics_all_seeds is not None:
            out["metrics_all_seeds"] = self.metrics_all_seeds
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ResultRow:
        """A row of ``metrics.json``: every key besides those of the record is a score ``{mean, ci95, n}``."""
        missing = [k for k in ("model", "protocol", "k", "per_seed") if k not in d]
        if missing:
            raise ValueError(f"result row {d.get('model')!r} lacks {', '.join(missing)}")
        bad = [k for k, v in d.items() if k not in _ROW_KEYS and not (isinstance(v, dict) and "mean" in v)]
        if bad:
            raise ValueError(f"result row {d['model']!r}: {', '.join(bad)} is neither a row field "
                             f"({', '.join(_ROW_KEYS)}) nor a score {{mean, ci95, n}}")
        return cls(model=d["model"], protocol=d["protocol"], k=str(d["k"]),
                   per_seed=[SeedScores.from_dict(s) for s in d["per_seed"]],
                   scores={k: Score.from_dict(v) for k, v in d.items() if k not in _ROW_KEYS},
                   dim=d.get("dim"), metrics_all_seeds=d.get("metrics_all_seeds"))


@dataclass(frozen=True)
class Headline:
    """The row the figures and the report single out (the pretrained row of the largest k, if any)."""

    model: str
    protocol: str
    k: str

    def matches(self, row: ResultRow) -> bool:
        return row.key == (self.model, self.protocol, self.k)

    def to_dict(self) -> dict:
        return {"model": self.model, "protocol": self.protocol, "k": self.k}

    @classmethod
    def from_dict(cls, d: dict) -> Headline:
        return cls(model=d["model"], protocol=d["protocol"], k=str(d["k"]))


@dataclass(frozen=True)
class PairedDifference:
    """Pretrained minus a baseline at one k, seed by seed on identical splits: per-seed differences and their
    summaries (:func:`eossl.evaluate.runs.paired_differences`)."""

    pretrained: tuple[str, str]                 # (model, protocol)
    baseline: tuple[str, str]
    k: str
    per_seed: list[SeedScores] = field(default_factory=list)
    scores: dict[str, Score] = field(default_factory=dict)

    def score(self, name: str) -> Score:
        return _score(self.scores, name, f"paired difference {self.label}")

    @property
    def label(self) -> str:
        return f"{self.pretrained[0]} / {self.pretrained[1]} - {self.baseline[0]} / {self.baseline[1]}"

    def to_dict(self) -> dict:
        return {"pretrained": {"model": self.pretrained[0], "protocol": self.pretrained[1]},
                "baseline": {"model": self.baseline[0], "protocol": self.baseline[1]}, "k": self.k,
                "per_seed": [s.to_dict() for s in self.per_seed],
                **{name: s.to_dict() for name, s in self.scores.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> PairedDifference:
        fixed = ("pretrained", "baseline", "k", "per_seed")
        return cls(pretrained=(d["pretrained"]["model"], d["pretrained"]["protocol"]),
                   baseline=(d["baseline"]["model"], d["baseline"]["protocol"]), k=str(d["k"]),
                   per_seed=[SeedScores.from_dict(s) for s in d["per_seed"]],
                   scores={k: Score.from_dict(v) for k, v in d.items() if k not in fixed})
