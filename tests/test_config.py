"""eossl.config: strict typed configs. Every error names the dotted key path and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from eossl.config import ConfigError, apply_overrides, field, from_dict, load_config, load_yaml, to_dict


@dataclass
class Optim:
    lr: float = field(1e-3, gt=0)
    momentum: float = field(0.9, ge=0, le=1)
    kind: Literal["sgd", "adamw", "lars"] = "sgd"


@dataclass
class Sampler:
    size: int = field(64, ge=8)
    bands: list[str] = field(default_factory=lambda: ["B02", "B03", "B04"])
    crop: tuple[int, int] = (32, 32)
    seed: int | None = None


@dataclass
class Run:
    name: str                                # required: no default
    out: Path = Path("runs")
    sampler: Sampler = field(default_factory=Sampler)
    optim: Optim = field(default_factory=Optim)
    samplers: list[Sampler] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    debug: bool = False


def test_from_dict_builds_nested_dataclasses_and_keeps_defaults():
    cfg = from_dict(Run, {"name": "a", "out": "x/y", "sampler": {"size": 128, "crop": [16, 24]},
                          "optim": {"kind": "adamw", "lr": "1e-4"}, "samplers": [{"size": 8}],
                          "weights": {"B02": 1}})
    assert cfg.name == "a"
    assert cfg.out == Path("x/y")
    assert cfg.sampler == Sampler(size=128, crop=(16, 24))
    assert cfg.sampler.bands == ["B02", "B03", "B04"]          # default kept
    assert cfg.optim.kind == "adamw"
    assert cfg.optim.lr == pytest.approx(1e-4)                  # YAML 1.1 reads `1e-4` as a string
    assert cfg.optim.momentum == 0.9
    assert cfg.samplers == [Sampler(size=8)]
    assert cfg.weights == {"B02": 1.0} and isinstance(cfg.weights["B02"], float)


def test_to_dict_round_trips():
    cfg = from_dict(Run, {"name": "a", "sampler": {"seed": 3}})
    plain = to_dict(cfg)
    assert plain["out"] == "runs" and plain["sampler"]["crop"] == [32, 32]
    assert from_dict(Run, plain) == cfg


def test_unknown_key_names_dotted_path_and_lists_allowed_keys():
    with pytest.raises(ConfigError) as err:
        from_dict(Run, {"name": "a", "sampler": {"sise": 64}})
    msg = str(err.value)
    assert msg.startswith("sampler.sise: unknown key")
    for allowed in ("size", "bands", "crop", "seed"):
        assert allowed in msg


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match=r"^nme: unknown key; allowed keys: name, out, sampler"):
        from_dict(Run, {"nme": "a"})


@pytest.mark.parametrize("data, path, expected", [
    ({"name": "a", "sampler": {"size": "big"}}, "sampler.size", "expected an integer"),
    ({"name": "a", "sampler": {"size": 64.5}}, "sampler.size", "expected an integer"),
    ({"name": "a", "sampler": {"size": True}}, "sampler.size", "expected an integer"),
    ({"name": 3}, "name", "expected a string"),
    ({"name": "a", "debug": "yes"}, "debug", "expected true or false"),
    ({"name": "a", "optim": {"lr": "fast"}}, "optim.lr", "expected a number"),
    ({"name": "a", "sampler": {"bands": "B02"}}, "sampler.bands", "expected a list"),
    ({"name": "a", "sampler": {"bands": ["B02", 4]}}, "sampler.bands[1]", "expected a string"),
    ({"name": "a", "sampler": {"crop": [1, 2, 3]}}, "sampler.crop", "expected 2 items"),
    ({"name": "a", "samplers": [{"size": 64}, {"size": "x"}]}, "samplers[1].size", "expected an integer"),
    ({"name": "a", "weights": [1, 2]}, "weights", "expected a mapping"),
    ({"name": "a", "optim": 5}, "optim", "expected a mapping"),
    ({"name": "a", "out": 5}, "out", "expected a path"),
])
def test_wrong_type_names_the_dotted_path(data, path, expected):
    with pytest.raises(ConfigError) as err:
        from_dict(Run, data)
    msg = str(err.value)
    assert msg.startswith(f"{path}:"), msg
    assert expected in msg


def test_optional_accepts_null_and_checks_the_type():
    assert from_dict(Sampler, {"seed": None}).seed is None
    assert from_dict(Sampler, {"seed": 7}).seed == 7
    with pytest.raises(ConfigError, match=r"^seed: got 'x' \(str\); expected an integer"):
        from_dict(Sampler, {"seed": "x"})
    with pytest.raises(ConfigError, match=r"^size: got None \(NoneType\); expected an integer"):
        from_dict(Sampler, {"size": None})

    @dataclass
    class Pick:
        mode: Literal["a", "b"] | float = "a"

    with pytest.raises(ConfigError, match=r"^mode: null is not allowed; expected 'a' \| 'b' \| float"):
        from_dict(Pick, {"mode": None})
    with pytest.raises(ConfigError, match=r"^mode: got 'c' \(str\); expected 'a' \| 'b' \| float"):
        from_dict(Pick, {"mode": "c"})
    assert from_dict(Pick, {"mode": 2}).mode == 2.0


@pytest.mark.parametrize("data, path, bound", [
    ({"name": "a", "sampler": {"size": 4}}, "sampler.size", ">= 8"),
    ({"name": "a", "optim": {"lr": 0}}, "optim.lr", "> 0"),
    ({"name": "a", "optim": {"momentum": 1.5}}, "optim.momentum", "<= 1"),
    ({"name": "a", "optim": {"momentum": -0.1}}, "optim.momentum", ">= 0"),
])
def test_out_of_range_names_path_and_bound(data, path, bound):
    with pytest.raises(ConfigError) as err:
        from_dict(Run, data)
    msg = str(err.value)
    assert msg.startswith(f"{path}:") and "out of range" in msg and bound in msg


def test_range_bounds_are_inclusive_where_declared():
    assert from_dict(Optim, {"momentum": 0}).momentum == 0
    assert from_dict(Optim, {"momentum": 1}).momentum == 1
    assert from_dict(Sampler, {"size": 8}).size == 8


def test_missing_required_field():
    with pytest.raises(ConfigError, match=r"^name: missing required field \(str\)"):
        from_dict(Run, {})
    with pytest.raises(ConfigError, match=r"^name: missing required field"):
        from_dict(Run, {"debug": True})


def test_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        from_dict(Run, {"name": "a", "optim": {"kind": "adam"}})
    msg = str(err.value)
    assert msg.startswith("optim.kind:")
    assert "'sgd', 'adamw', 'lars'" in msg and "'adam'" in msg


def test_not_a_mapping_at_root():
    with pytest.raises(ConfigError, match=r"<root>: got \[1, 2\] \(list\); expected a mapping of Run's keys"):
        from_dict(Run, [1, 2])


def test_post_init_errors_become_config_errors():
    @dataclass
    class Pair:
        lo: int = 0
        hi: int = 1

        def __post_init__(self):
            if self.lo >= self.hi:
                raise ValueError(f"lo ({self.lo}) must be < hi ({self.hi})")

    with pytest.raises(ConfigError, match=r"pair: lo \(3\) must be < hi \(1\)"):
        from_dict(Pair, {"lo": 3}, path="pair")


def test_load_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found: .*nope.yaml"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_yaml(bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: a\noptim:\n  lr: 1e-4\n")
    cfg = from_dict(Run, load_yaml(good))
    assert cfg.optim.lr == pytest.approx(1e-4)


def test_apply_overrides_parses_values_as_yaml_and_copies():
    base = {"name": "a", "sampler": {"size": 64}}
    out = apply_overrides(base, ["sampler.size=128", "optim.kind=adamw", "sampler.bands=[B02, B8A]"])
    assert out == {"name": "a", "sampler": {"size": 128, "bands": ["B02", "B8A"]}, "optim": {"kind": "adamw"}}
    assert base == {"name": "a", "sampler": {"size": 64}}   # the input is not modified
    assert from_dict(Run, out).sampler.size == 128
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(base, ["sampler.size"])
    with pytest.raises(ConfigError, match="name is not a mapping"):
        apply_overrides(base, ["name.first=b"])


def test_a_partial_nested_override_keeps_the_fields_own_defaults():
    """corpus.sampler defaults to 8192 chips of 64 px (its default_factory), not SamplerConfig's class defaults:
    overriding one key of it must keep the others (a bug that once cut a run to 1024 chips)."""
    from eossl.config import load_config
    from eossl.train.config import PretrainConfig

    default = PretrainConfig().corpus.sampler
    cfg = load_config(PretrainConfig, None, overrides=["corpus.sampler.roi_crs=EPSG:32618", "corpus.sampler.chip_size=96"])
    assert cfg.corpus.sampler.num_samples == default.num_samples == 8192
    assert cfg.corpus.sampler.chip_size == 96 and cfg.corpus.sampler.roi_crs == "EPSG:32618"
    assert cfg.corpus.batch_size == PretrainConfig().corpus.batch_size


def test_a_path_given_for_a_section_names_the_sections_keys():
    from eossl.evaluate.config import EvaluateConfig

    with pytest.raises(ConfigError, match=r"data\.scenes: got '/x/i\.parquet' \(str\); expected a mapping of "
                                          r"ScenesConfig's keys \(data\.scenes\.index, .*--set data\.scenes\.index="):
        load_config(EvaluateConfig, None, overrides=["data.scenes=/x/i.parquet"])
