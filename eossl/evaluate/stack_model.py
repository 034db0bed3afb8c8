"""A pixel classifier over a composited scene stack: the model the stack evaluation scores and the crop-type map
applies, through one method.

>>> comp = composite(open_stack("flanders2018/"), period="10D")
>>> every = stack_samples(comp)                                        # every pixel, unlabelled
>>> model = StackModel.build("fusion", classes=["Maize", "Grass"], codes=[1200, 9120], bands=comp.bands,
...                          sensor=comp.sensor, steps=len(comp.starts), period="10D", weights="runs/w")
>>> model.prepare(every)                     # unsupervised parts on every pixel (fill values, PCA, kernels)
>>> model.fit(stack_samples(comp, rows, cols, labels, classes))      # the classifier on the labelled pixels
>>> proba = model.predict_proba(every)                                  # (H*W, K), columns in ``classes`` order
>>> model.save("runs/model"); StackModel.load("runs/model")

``predict_proba(s) = proba_from_features(transform(s))``; a pixel's features depend only on that pixel and the
fitted state (:mod:`eossl.evaluate.stack_features`), so the evaluation, which computes ``transform`` once for
every pixel and fits one classifier per split on rows of it, scores exactly what the map predicts. Feature kinds:
:data:`~eossl.evaluate.stack_features.FEATURE_KINDS`; classifiers: ``linear`` (logistic regression) and
``random_forest`` (:mod:`eossl.evaluate.stack_classifier`).

Saved as ``stack_model.json`` (description, settings), ``stack_model.npz`` (fitted arrays) and, for the encoder
kinds, ``encoder.safetensors`` (the encoder's weights, copied; its constructor arguments, wavelengths and
normalisation in the JSON). No pickle.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eossl.data.normalization import Normalization
from eossl.data.series.tables import SeriesSamples
from eossl.evaluate import stack_features as sf
from eossl.evaluate import stack_image as si
from eossl.evaluate.stack_classifier import CLASSIFIERS, classifier_proba, fit_classifier
from eossl.runs import atomic_write

log = logging.getLogger(__name__)

__all__ = ["AbsentClassWarning", "KINDS", "StackModel", "MODEL_FILE"]

MODEL_FILE = "stack_model.json"
ARRAYS_FILE = "stack_model.npz"
ENCODER_WEIGHTS = "encoder.safetensors"
IMAGE_WEIGHTS = "image.safetensors"
_ENCODER_KINDS = ("encoder", "fusion")
KINDS = (*sf.FEATURE_KINDS, *si.IMAGE_KINDS)


class AbsentClassWarning(UserWarning):
    """A class of the model has no training pixel: it is never predicted (probability 0)."""


@dataclass
class StackModel:
    """See the module doc. ``classes`` names, ``codes`` their legend codes (the map's pixel values), ``bands`` and
    ``steps`` the series it reads, ``period`` the composite it was made for; ``settings`` of the feature kind
    (``pca``: components, whiten; ``rocket``: n_features, max_pixels; ``trees`` of the forest)."""

    features: str
    classes: list[str]
    codes: list[int]
    bands: list[str]
    sensor: str
    steps: int
    period: str = "10D"
    classifier: str = "linear"
    C: float = 1.0
    C_grid: list[float] | None = None
    seed: int = 0
    settings: dict = field(default_factory=dict)
    encoder: object = None                    # a PixelSeriesEncoder (encoder kinds)
    encoder_norm: Normalization | None = None
    encoder_info: dict = field(default_factory=dict)     # kwargs, wavelengths_nm, source
    image: si.ImageChips | None = None                    # the image backbone (image kinds)
    device: str = "cpu"
    state: dict = field(default_factory=dict)            # unsupervised, from every pixel
    head: dict = field(default_factory=dict)             # the classifier's arrays

    def __post_init__(self):
        if self.features not in KINDS:
            raise ValueError(f"unknown feature kind {self.features!r}; known: {', '.join(KINDS)}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {self.classifier!r}; known: {', '.join(CLASSIFIERS)}")
        if len(self.classes) != len(self.codes):
            raise ValueError(f"{len(self.classes)} class names but {len(self.codes)} codes")
        if self.features in _ENCODER_KINDS and self.encoder is None:
            raise ValueError(f"feature kind {self.features!r} needs an encoder: StackModel.build(..., weights=DIR) "
                             f"or encoder_kwargs for a random-init one")
        if self.features in si.IMAGE_KINDS and self.image is None:
            raise ValueError(f"feature kind {self.features!r} needs image weights: StackModel.build(..., "
                             f"image_weights=DIR) (stack.image_weights)")

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def build(cls, features: str, *, classes, codes, bands, sensor: str, steps: int, weights=None,
              encoder_kwargs: dict | None = None, seed: int = 0, image_weights=None, image: dict | None = None,
              device: str = "cpu", **kwargs) -> StackModel:
        """A model (not fitted). For ``encoder``/``fusion``: the pretrained encoder of ``weights`` (an exported
        weights directory) re-targeted to ``bands``, with its normalisation; without weights a random-init one
        (``encoder_kwargs``, initialised from ``seed``). For the image kinds: the image backbone of
        ``image_weights`` (:func:`~eossl.evaluate.stack_image.make_image_chips`; ``image``: ``chip``, ``norm``
        (weights / stack), ``random_init``)."""
        enc = norm = chips = None
        info = {}
        if features in _ENCODER_KINDS:
            enc, norm, info = _make_encoder(list(bands), sensor, weights, dict(encoder_kwargs or {}), seed)
        if features in si.IMAGE_KINDS:
            if image_weights is None:
                raise ValueError(f"feature kind {features!r} needs image weights (stack.image_weights: an exported "
                                 f"image backbone from `eossl pretrain`)")
            opts = dict(image or {})
            chips = si.make_image_chips(list(bands), sensor, image_weights, chip=opts.get("chip", 16),
                                        norm_from=opts.get("norm", "weights"),
                                        random_init=bool(opts.get("random_init", False)), seed=seed, device=device)
        return cls(features=features, classes=list(classes), codes=[int(c) for c in codes], bands=list(bands),
                   sensor=sensor, steps=int(steps), seed=seed, encoder=enc, encoder_norm=norm, encoder_info=info,
                   image=chips, device=device, **kwargs)

    def prepare(self, unlabelled: SeriesSamples | list[SeriesSamples], comps: list | None = None) -> StackModel:
        """Fit the unsupervised parts on every pixel given (labels unused): band fill values, the PCA or the
        MiniRocket kernels and biases, and for the encoder kinds the statistics of bands the weights have none for
        (Sentinel-1 VV/VH: from these pixels; see :func:`_complete_norm`). The image kinds read the composites
        ``comps`` the pixels come from (their statistics, the principal axes of ``image_sequence``)."""
        s = sf.joined(unlabelled)
        self._check(s)
        fill = sf.band_means(s)
        state = {"fill": fill}
        if self.features in _ENCODER_KINDS and (self.encoder_norm is None
                                                or list(self.encoder_norm.bands) != self.bands):
            self.encoder_norm = _complete_norm(self.encoder_norm, self.sensor, s)
        if self.features == "pca":
            p = self.settings.get("pca", {})
            state.update(sf.fit_pca(s, fill, p.get("components", 32), p.get("whiten", True), self.seed))
        elif self.features == "rocket":
            r = self.settings.get("rocket", {})
            state.update(sf.fit_rocket(s, fill, r.get("n_features", 2000), self.seed, r.get("max_pixels", 16384)))
        elif self.features in si.IMAGE_KINDS:
            comps = self._comps(comps)
            im = self.settings.get("image", {})
            self.image.prepare(comps)
            state.update(si.fit_image_state(self.image, comps, self.features, im.get("components", 16),
                                            im.get("max_pixels", 2048), self.seed))
        self.state = state
        return self

    # ------------------------------------------------------------------------------------------ features

    def transform(self, s: SeriesSamples, comp=None, pixels: np.ndarray | None = None) -> np.ndarray:
        """(N, D) float32 features of the pixels of ``s``. The image kinds read them from the composite ``comp``
        the pixels come from: ``pixels`` their flat (row-major) indices in it, default every pixel of ``comp``."""
        self._check(s)
        if "fill" not in self.state:
            raise ValueError("the model is not prepared: call prepare(every pixel of the stack) first")
        fill, kind = self.state["fill"], self.features
        if kind in si.IMAGE_KINDS:
            comp = self._comps([comp] if comp is not None else None)[0]
            n = comp.values.shape[2] * comp.values.shape[3]
            pixels = np.arange(n) if pixels is None else np.asarray(pixels, dtype=np.int64)
            if len(pixels) != len(s):
                raise ValueError(f"{len(s)} pixels but {len(pixels)} pixel indices into the composite: one flat "
                                 f"(row-major) index per pixel of the series is needed")
            return si.image_features(self.image, comp, pixels, kind, self.state)
        if kind == "raw":
            return sf.raw_features(s, fill)
        if kind == "pca":
            return sf.pca_features(s, fill, self.state).astype(np.float32)
        if kind == "rocket":
            return sf.rocket_features(s, fill, self.state)
        if kind == "phenology":
            return sf.phenology_stack_features(s, fill).astype(np.float32)
        enc = sf.encoder_stack_features(s, self.encoder, self.encoder_norm, self.device)
        return enc if kind == "encoder" else np.hstack([sf.raw_features(s, fill), enc])

    def _comps(self, comps) -> list:
        if not comps:
            raise ValueError(f"feature kind {self.features!r} reads the chips around each pixel: give the "
                             f"composite(s) of the stack (comps= / comp=)")
        return list(comps)

    def _check(self, s: SeriesSamples) -> None:
        if list(s.bands) != self.bands or s.values.shape[1] != self.steps:
            raise ValueError(f"the model reads {self.steps} steps of {self.bands}; these series have "
                             f"{s.values.shape[1]} steps of {list(s.bands)} (composite the stack with period "
                             f"{self.period!r} and the same bands)")

    # ------------------------------------------------------------------------------------------ classifier

    def fit(self, train: SeriesSamples, allow_absent: bool = False) -> StackModel:
        """Fit the classifier on the labelled pixels of ``train`` (labels index ``self.classes``)."""
        return self.fit_features(self.transform(train), train.labels, allow_absent)

    def fit_features(self, x: np.ndarray, y: np.ndarray, allow_absent: bool = False) -> StackModel:
        """Fit the classifier on features ``x`` (N, D) of :meth:`transform` and class indices ``y`` (N,). A class
        without a training pixel is a ValueError, or with ``allow_absent`` an :class:`AbsentClassWarning` (the
        class is never predicted)."""
        y = np.asarray(y, dtype=np.int64)
        if len(y) != len(x) or (y < 0).any() or (y >= len(self.classes)).any():
            raise ValueError(f"fit: {len(y)} labels for {len(x)} pixels, each an index into the "
                             f"{len(self.classes)} classes (unlabelled pixels cannot be trained on)")
        absent = [self.classes[i] for i in range(len(self.classes)) if not (y == i).any()]
        if absent:
            msg = (f"no training pixel of class(es) {', '.join(absent)}: the model cannot predict them; label "
                   f"pixels of them or leave them out of classes")
            if not allow_absent or len(absent) == len(self.classes):
                raise ValueError(msg)
            warnings.warn(msg, AbsentClassWarning, stacklevel=2)
        self.head = fit_classifier(self.classifier, x, y, self.C, self.C_grid, self.settings.get("trees", 300),
                                   self.seed)
        return self

    def proba_from_features(self, x: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities of features ``x`` of :meth:`transform`."""
        if not self.head:
            raise ValueError("the model is not fitted: call fit(labelled pixels) first")
        return classifier_proba(self.classifier, self.head, x, len(self.classes))

    def predict_proba(self, s: SeriesSamples, comp=None, pixels: np.ndarray | None = None) -> np.ndarray:
        """(N, K) class probabilities of the pixels of ``s``, columns in ``classes`` order (``comp``/``pixels``:
        see :meth:`transform`)."""
        return self.proba_from_features(self.transform(s, comp, pixels))

    def predict_codes(self, s: SeriesSamples, comp=None, pixels: np.ndarray | None = None) -> np.ndarray:
        """(N,) legend codes of the most probable class."""
        return np.asarray(self.codes)[self.predict_proba(s, comp, pixels).argmax(axis=1)]

    # ------------------------------------------------------------------------------------------ save / load

    def save(self, out: str | Path) -> Path:
        """``out/stack_model.json``, ``out/stack_model.npz`` and, for encoder kinds, ``out/encoder.safetensors``."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"features": self.features, "classes": self.classes, "codes": self.codes, "bands": self.bands,
                "sensor": self.sensor, "steps": self.steps, "period": self.period, "classifier": self.classifier,
                "C": self.C, "C_grid": self.C_grid, "seed": self.seed, "settings": self.settings}
        if self.encoder is not None:
            meta["encoder"] = {**self.encoder_info, "normalization": {"bands": list(self.encoder_norm.bands),
                                                                      **self.encoder_norm.to_dict()}}
            state = {k: v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
            atomic_write(out / ENCODER_WEIGHTS, lambda p: save_file(state, str(p)))
        if self.image is not None:
            im = self.image
            meta["image"] = {"bands": im.bands, "chip": im.chip, "norm_from": im.norm_from, "info": im.info,
                             "product": im.product, "normalization": im.norm.to_dict(),
                             "weights_normalization": im.weights_norm.to_dict()}
            image = {k: v.detach().cpu().contiguous() for k, v in im.model.backbone.state_dict().items()}
            atomic_write(out / IMAGE_WEIGHTS, lambda p: save_file(image, str(p)))
        arrays = {f"state.{k}": np.asarray(v) for k, v in self.state.items()}
        arrays.update({f"head.{k}": np.asarray(v) for k, v in self.head.items()})
        atomic_write(out / ARRAYS_FILE, lambda p: np.savez(p, **arrays))
        atomic_write(out / MODEL_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))     # last: the model exists
        return out

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> StackModel:
        """The model saved by :meth:`save` in ``path``."""
        path = Path(path)
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"no {MODEL_FILE} in {path}: save a StackModel there first")
        meta = json.loads((path / MODEL_FILE).read_text())
        enc_meta = meta.pop("encoder", None)
        image_meta = meta.pop("image", None)
        enc = norm = None
        if enc_meta is not None:
            enc, norm = _load_encoder(path, enc_meta)
        chips = _load_image(path, image_meta, device) if image_meta is not None else None
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as z:
            state = {k[6:]: z[k] for k in z.files if k.startswith("state.")}
            head = {k[5:]: z[k] for k in z.files if k.startswith("head.")}
        info = {k: v for k, v in (enc_meta or {}).items() if k != "normalization"}
        return cls(**meta, encoder=enc, encoder_norm=norm, encoder_info=info, image=chips, device=device, state=state,
                   head=head)


def _make_encoder(bands: list[str], sensor: str, weights, kwargs: dict, seed: int):
    """(encoder, stored normalisation, description) of the pretrained encoder of ``weights`` or a random-init one.

    Bands are keyed by :func:`~eossl.data.series.channels.channel_wavelengths` (Sentinel-1 VV/VH by their
    pseudo-wavelengths). The normalisation returned holds the weights' statistics (None for a random-init
    encoder); :meth:`StackModel.prepare` completes it for every band (:func:`_complete_norm`)."""
    import torch

    from eossl.catalog.sensors import load_sensor
    from eossl.data.series.channels import channel_wavelengths
    from eossl.models.temporal import PixelSeriesEncoder, encoder_kwargs, load_series_encoder

    wavelengths = [float(w) for w in channel_wavelengths(load_sensor(sensor), bands)]
    if weights is not None:
        loaded = load_series_encoder(weights, wavelengths)
        kw = encoder_kwargs(loaded.info)
        return (loaded.model.eval(), Normalization.of_weights(loaded.info),
                {"kwargs": kw, "wavelengths_nm": wavelengths, "source": f"pretrained {weights}",
                 "ssl_method": loaded.info.ssl_method})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = PixelSeriesEncoder(wavelengths, **kwargs)
    return (enc.eval(), None, {"kwargs": kwargs, "wavelengths_nm": wavelengths,
                               "source": f"random-init (seed {seed})"})


def _complete_norm(stored: Normalization | None, sensor: str, s: SeriesSamples) -> Normalization:
    """Statistics for every band of ``s``: ``stored``'s (the weights') where it has the band, the sensor catalog's
    for other optical bands, and for Sentinel-1 VV/VH without stored statistics those of the valid values of
    every pixel of ``s`` (:func:`~eossl.data.series.channels.channel_normalization`)."""
    from eossl.catalog.sensors import load_sensor
    from eossl.data.series.channels import channel_normalization

    return channel_normalization(load_sensor(sensor), list(s.bands), s.values, s.valid, stored=stored)


def _load_encoder(path: Path, meta: dict):
    from safetensors.torch import load_file

    from eossl.models.temporal import PixelSeriesEncoder

    enc = PixelSeriesEncoder(meta["wavelengths_nm"], **meta["kwargs"])
    enc.load_state_dict(load_file(str(path / ENCODER_WEIGHTS)), strict=True)
    n = meta["normalization"]
    return enc.eval(), Normalization(tuple(n["bands"]), n["mean"], n["std"])


def _load_image(path: Path, meta: dict, device: str) -> si.ImageChips:
    from safetensors.torch import load_file

    from eossl.models.backbones import create_backbone
    from eossl.models.pooling import PooledBackbone

    info, bands = meta["info"], list(meta["bands"])
    backbone = create_backbone(info["arch"], len(bands), img_size=int(meta["chip"]))
    backbone.load_state_dict(load_file(str(path / IMAGE_WEIGHTS)), strict=True)
    n, wn = meta["normalization"], meta["weights_normalization"]
    return si.ImageChips(model=PooledBackbone(backbone, info["pool"]).eval(), bands=bands, chip=int(meta["chip"]),
                         norm_from=meta["norm_from"], weights_norm=Normalization(tuple(bands), wn["mean"], wn["std"]),
                         norm=Normalization(tuple(bands), n["mean"], n["std"]), info=info, device=device,
                         product=meta.get("product", {}))
