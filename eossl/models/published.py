"""Published weights in: torchgeo's pretrained weights and plain timm / torchvision checkpoints as eossl weights.

``torchgeo:<WeightsEnum name>`` (``torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO``) is accepted wherever a weights
directory is (``model.init``, ``evaluate --weights``, ``finetune --weights``): :func:`resolve_weights` imports it
once into ``$EOSSL_WEIGHTS_CACHE`` (default ``~/.cache/eossl/weights``) and returns that directory. What the
import takes from torchgeo:

* architecture and input channels from ``meta["model"]`` / ``meta["in_chans"]``;
* bands from ``meta["bands"]`` (``B1`` .. ``B12``, ``B8a``: resolved through the sensor's aliases), wavelengths
  and GSD from the eossl sensor (inferred from the dataset and bands, or ``sensor=``);
* normalisation from the ``Normalize`` in ``weights.transforms``, which acts on the dataset's stored values (DN):
  expressed in reflectance with the sensor's DN scale and offset (``mean * scale + offset``, ``std * scale``),
  the units eossl's readers produce. Weights whose inputs are not the sensor's DN (SSL4EO-L's 8-bit rescaled
  Landsat) are refused rather than given a wrong normalisation.

The file is downloaded by torchgeo (``weights.get_state_dict``) on machines with internet, or read from
``weights_file`` (``--weights-file``). :func:`import_checkpoint` does the same for a plain timm / torchvision
state dict (architecture, sensor and bands given; an RGB ImageNet checkpoint is ``bands=[red, green, blue]``).
The stem policy for data bands without a counterpart (``unmatched``, see :mod:`eossl.models.adapt`) is recorded
in ``weights.json``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from eossl.models.adapt import UNMATCHED
from eossl.models.backbones import ARCHS, create_backbone, stem_key
from eossl.models.shipped import is_shipped, resolve_shipped
from eossl.models.weights import INFO_FILE, WeightsInfo, export_backbone

log = logging.getLogger(__name__)

__all__ = ["TORCHGEO", "resolve_weights", "import_torchgeo", "import_checkpoint", "torchgeo_weight",
           "torchgeo_names", "weights_cache"]

TORCHGEO = "torchgeo:"
_HEAD_PREFIXES = ("fc.", "head.", "classifier.", "head_drop.")
_WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
# torchgeo dataset -> eossl sensor, when the bands alone do not tell (TOA vs surface reflectance)
_DATASET_SENSORS = {"SSL4EO-S12": "sentinel2-l1c", "SeCo": "sentinel2-l1c"}


def weights_cache() -> Path:
    return Path(os.environ.get("EOSSL_WEIGHTS_CACHE") or Path.home() / ".cache" / "eossl" / "weights")


# ------------------------------------------------------------------------------------------ torchgeo


def torchgeo_names() -> list[str]:
    """Every torchgeo weights name (``Enum.MEMBER``)."""
    import torchgeo.models as tm

    names = []
    for attr in dir(tm):
        enum = getattr(tm, attr)
        if attr.endswith("_Weights") and isinstance(enum, type):
            names += [f"{attr}.{m.name}" for m in enum]
    return sorted(names)


def torchgeo_weight(name: str):
    """The torchgeo WeightsEnum member called ``name``; ValueError listing the names when there is none."""
    import torchgeo.models as tm

    name = name.removeprefix(TORCHGEO)
    enum_name, _, member = name.partition(".")
    enum = getattr(tm, enum_name, None) if enum_name.endswith("_Weights") else None
    if enum is not None and member in enum.__members__:
        return enum[member]
    names = torchgeo_names()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    raise ValueError(f"torchgeo has no weights {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
                     + f" torchgeo {_version()} has: {', '.join(names)}")


def _version() -> str:
    import torchgeo

    return torchgeo.__version__


def _normalize_of(transforms) -> tuple[list[float], list[float]] | None:
    """(mean, std) of the one Normalize in a torchgeo ``transforms`` (torchvision v2 or kornia), else None."""
    found = []
    modules = transforms.modules() if isinstance(transforms, torch.nn.Module) else []
    for m in modules:
        if type(m).__name__ != "Normalize":
            continue
        mean = getattr(m, "mean", None)
        std = getattr(m, "std", None)
        flags = getattr(m, "flags", None) or {}
        mean = flags.get("mean", mean)
        std = flags.get("std", std)
        if mean is not None and std is not None:
            found.append(([float(v) for v in torch.as_tensor(mean).reshape(-1)],
                          [float(v) for v in torch.as_tensor(std).reshape(-1)]))
    return found[0] if len(found) == 1 else None


def _arch_of(timm_name: str) -> str:
    for name in ARCHS.names():
        timm, extra = ARCHS.get(name)
        if timm == timm_name and not extra:
            return name
    raise ValueError(f"architecture {timm_name!r} is not one eossl builds ({', '.join(ARCHS.names())}); these "
                     f"weights cannot be imported")


def _sensor_for(bands: list[str], dataset: str | None, sensor: str | None):
    """The eossl sensor of published weights: ``sensor`` if given, else the one that names every band (the
    dataset settles TOA vs surface reflectance)."""
    from eossl.catalog.sensors import list_sensors, load_sensor

    if sensor is not None:
        s = load_sensor(sensor)
        missing = [b for b in bands if s.match(b) is None]
        if missing:
            raise ValueError(f"sensor {s.name} has no band {', '.join(missing)} (the weights' bands are "
                             f"{', '.join(bands)}); pass --sensor with a sensor that has them")
        return s
    if dataset in _DATASET_SENSORS and all(load_sensor(_DATASET_SENSORS[dataset]).match(b) for b in bands):
        return load_sensor(_DATASET_SENSORS[dataset])
    fits = [n for n in list_sensors() if all(load_sensor(n).match(b) for b in bands)]
    if len(fits) == 1:
        return load_sensor(fits[0])
    raise ValueError(f"the weights' bands {', '.join(bands)} (dataset {dataset or 'unknown'}) fit "
                     f"{'several sensors: ' + ', '.join(fits) if fits else 'no installed sensor'}; pass --sensor NAME")


def _cache_dir(name: str, weights_file: str | None) -> Path:
    tag = name.removeprefix(TORCHGEO)
    if weights_file is not None:
        tag += "-" + hashlib.sha256(str(Path(weights_file).resolve()).encode()).hexdigest()[:8]
    return weights_cache() / "torchgeo" / tag


def import_torchgeo(name: str, out: str | Path, weights_file: str | Path | None = None, sensor: str | None = None,
                    unmatched: str = "error", overwrite: bool = False) -> Path:
    """Import torchgeo weights ``name`` into the eossl weights directory ``out`` (see module doc)."""
    weight = torchgeo_weight(name)
    meta = dict(weight.meta)
    for key in ("model", "in_chans", "bands"):
        if not meta.get(key):
            raise ValueError(f"torchgeo weights {name}: meta has no {key!r}, so eossl cannot tell what the weights "
                             f"expect")
    if meta.get("dataset") == "SSL4EO-L":
        raise ValueError(f"torchgeo weights {name} expect SSL4EO-L's 8-bit rescaled Landsat values, which no "
                         f"eossl reader produces; a normalisation in reflectance cannot be given for them")
    arch = _arch_of(str(meta["model"]))
    s = _sensor_for(list(meta["bands"]), meta.get("dataset"), sensor)
    bands = [s.resolve(b) for b in meta["bands"]]
    if len(bands) != int(meta["in_chans"]):
        raise ValueError(f"torchgeo weights {name}: {len(bands)} bands but in_chans {meta['in_chans']}")
    norm = _normalize_of(weight.transforms)
    if norm is None:
        raise ValueError(f"torchgeo weights {name}: no single Normalize in its transforms ({weight.transforms}); "
                         f"eossl cannot tell the input normalisation")
    mean, std = (v * len(bands) if len(v) == 1 else v for v in norm)
    ref_mean, ref_std = [], []
    for b, m, sd in zip(bands, mean, std, strict=True):
        band = s.band(b)
        ref_mean.append(m * band.scale + band.offset)
        ref_std.append(sd * band.scale)
    state = _load_state(weights_file) if weights_file is not None else _download(weight, name)
    how = (f"torchgeo transforms Normalize(mean={norm[0]}, std={norm[1]}) on {s.name} DN, expressed in "
           f"reflectance (DN * scale + offset)")
    info = WeightsInfo(arch=arch, in_chans=len(bands), bands=bands, wavelengths_nm=s.wavelengths(bands),
                       gsd_m=float(min(s.band(b).gsd_m for b in bands)),
                       normalization={"mean": ref_mean, "std": ref_std},
                       ssl_method=str(meta.get("ssl_method") or "supervised"),
                       pretrain_data=str(meta.get("dataset") or "unknown"), epochs=0, img_size=224,
                       unmatched=unmatched,
                       extra={"source": f"{TORCHGEO}{weight}", "url": getattr(weight, "url", None),
                              "weights_file": str(weights_file) if weights_file else None,
                              "publication": meta.get("publication"), "repo": meta.get("repo"),
                              "licence": meta.get("license"), "normalization_from": how,
                              "torchgeo_version": _version(), "sensor": s.name})
    return _export(state, info, out, overwrite, f"torchgeo weights {name}")


def _download(weight, name: str) -> dict:
    try:
        return weight.get_state_dict(progress=True)
    except Exception as err:   # urllib / hub errors: no internet, a proxy, a moved file
        raise ValueError(f"cannot download torchgeo weights {name} from {getattr(weight, 'url', '?')} ({err}); "
                         f"on a machine without internet, download that file elsewhere and pass it with "
                         f"--weights-file PATH") from err


# ------------------------------------------------------------------------------------------ plain checkpoints


def _load_state(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # pickle / zip errors
        raise ValueError(f"{path}: not a PyTorch state dict ({err})") from err
    if isinstance(obj, dict):   # training checkpoints keep the weights under one of these keys
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (or one under 'state_dict' / 'model')")
    return obj


def _clean(state: dict, model: torch.nn.Module, what: str) -> dict:
    """``state`` with wrapper prefixes and classifier heads removed, checked against ``model``'s keys."""
    want = set(model.state_dict())
    for prefix in _WRAPPER_PREFIXES:
        if not (set(state) & want) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES) or k in want}
    missing = sorted(want - set(state))
    unexpected = sorted(set(state) - want)
    if missing or unexpected:
        raise ValueError(f"{what}: its keys do not fit a timm {model.__class__.__name__} "
                         f"({len(missing)} missing, e.g. {missing[:4]}; {len(unexpected)} unexpected, e.g. "
                         f"{unexpected[:4]}); is the architecture right?")
    return state


def _export(state: dict, info: WeightsInfo, out, overwrite: bool, what: str) -> Path:
    model = create_backbone(info.arch, info.in_chans, info.img_size)
    state = _clean(state, model, what)
    key = stem_key(info.arch)
    if state[key].shape[1] != info.in_chans:
        raise ValueError(f"{what}: the stem {key} takes {state[key].shape[1]} bands, not {info.in_chans}")
    model.load_state_dict(state, strict=True)
    out = export_backbone(model, info, out, overwrite=overwrite)
    log.info("imported %s into %s (%s, bands %s)", what, out, info.arch, ", ".join(info.bands))
    return out


def import_checkpoint(path: str | Path, out: str | Path, *, arch: str, sensor: str, bands: list[str] | None = None,
                      mean: list[float] | None = None, std: list[float] | None = None, unmatched: str = "error",
                      ssl_method: str = "supervised", pretrain_data: str = "unknown", img_size: int = 224,
                      overwrite: bool = False) -> Path:
    """A plain timm / torchvision state dict at ``path`` as an eossl weights directory.

    ``bands``: the sensor's bands the stem's channels take, in order (default for a 3-channel stem: the sensor's
    red, green, blue). ``mean`` / ``std`` in reflectance; default the sensor catalog's statistics of those bands
    (the checkpoint records none; an ImageNet checkpoint's 8-bit RGB statistics do not apply to reflectance)."""
    from eossl.catalog.sensors import load_sensor
    from eossl.data.normalization import Normalization

    if unmatched not in UNMATCHED:
        raise ValueError(f"unmatched: {unmatched!r}; choose one of {', '.join(UNMATCHED)}")
    s = load_sensor(sensor)
    state = _load_state(path)
    key = stem_key(arch)
    stem = next((v for k, v in state.items() if k.endswith(key)), None)
    if stem is None:
        raise ValueError(f"{path}: no {key} in the checkpoint; is --arch {arch} right?")
    channels = int(stem.shape[1])
    if bands is None:
        if channels != 3:
            raise ValueError(f"{path}: the stem takes {channels} bands; name them with --bands (in input order)")
        bands = [s.resolve(c) for c in ("red", "green", "blue")]
    bands = s.resolve_many(bands)
    if len(bands) != channels:
        raise ValueError(f"{path}: the stem takes {channels} bands but --bands names {len(bands)}")
    norm = Normalization.of_sensor(s, bands)
    given = mean is not None and std is not None
    mean = list(mean) if mean is not None else norm.mean.tolist()
    std = list(std) if std is not None else norm.std.tolist()
    info = WeightsInfo(arch=arch, in_chans=channels, bands=bands, wavelengths_nm=s.wavelengths(bands),
                       gsd_m=float(min(s.band(b).gsd_m for b in bands)), normalization={"mean": mean, "std": std},
                       ssl_method=ssl_method, pretrain_data=pretrain_data, epochs=0, img_size=img_size,
                       unmatched=unmatched,
                       extra={"source": str(Path(path).resolve()), "sensor": s.name,
                              "normalization_from": "given" if given
                              else f"{s.name} catalog statistics (the checkpoint records none)"})
    return _export(state, info, out, overwrite, str(path))


# ------------------------------------------------------------------------------------------ resolving a spec


def resolve_weights(spec: str | Path | None, weights_file: str | Path | None = None) -> str | None:
    """A weights directory for ``spec``: an eossl weights directory as is; ``eossl:NAME`` the shipped folder
    (checksums verified, :mod:`eossl.models.shipped`); ``torchgeo:NAME`` imported once into the cache (from
    ``weights_file`` when given) and that directory returned."""
    if spec is None:
        return None
    text = str(spec)
    if is_shipped(text):
        if weights_file is not None:
            raise ValueError(f"a weights file ({weights_file}) is only for torchgeo:NAME weights; {text} is shipped "
                             f"with eossl: drop --weights-file / model.init_file")
        return resolve_shipped(text)
    if not text.startswith(TORCHGEO):
        if weights_file is not None:
            raise ValueError(f"a weights file ({weights_file}) is only for published weights (torchgeo:NAME); "
                             f"{text} is a weights directory already: drop --weights-file / model.init_file")
        return text
    out = _cache_dir(text, str(weights_file) if weights_file else None)
    if (out / INFO_FILE).is_file():
        recorded = json.loads((out / INFO_FILE).read_text()).get("extra", {}).get("source")
        if recorded == text:
            return str(out)
    import_torchgeo(text, out, weights_file=weights_file, overwrite=True)
    return str(out)
