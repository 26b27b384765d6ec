"""Run configuration: every refusal names the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pathatlas.attribution.run.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def minimal(**overrides):
    cfg = {
        "dataset": {"kind": "synthetic", "n_samples": 8},
        "model": {"kind": "demo"},
        "methods": [{"name": "integrated_gradients", "settings": {"n_steps": 8}}],
        "store": {"uri": "runs/x/store.zarr"},
    }
    cfg.update(overrides)
    return cfg


def problems(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(cfg, "test.yaml")
    return str(info.value)


def test_minimal_config_gets_defaults():
    cfg = parse_config(minimal())
    assert cfg.target == "predicted" and cfg.compute.precision == "fp32"
    assert cfg.methods[0].store_key == "integrated_gradients"
    assert cfg.report_path == "runs/x/report.html"


def test_unknown_key_lists_allowed_keys():
    msg = problems(minimal(compute={"n_actor": 2}))
    assert "unknown key 'n_actor' at compute" in msg
    assert "allowed keys: actor_restarts, batch_size, channels_last" in msg and "n_actors" in msg
    msg = problems(minimal(dataset={"kind": "synthetic", "size": 3}))
    assert (
        "unknown key 'size' at dataset.synthetic; allowed keys: background_contrast, global_amplitude, image_size"
        in msg
    )
    assert "unknown key 'colour' at top level" in problems(minimal(colour=1))


def test_bad_values_name_key_value_and_allowed():
    msg = problems(minimal(compute={"precision": "fp16"}))
    assert "compute.precision: Input should be 'fp32' or 'bf16' (got 'fp16')" in msg
    msg = problems(minimal(store={"uri": "a", "shard_size": 0}))
    assert "store.shard_size: Input should be greater than 0 (got 0)" in msg
    msg = problems(minimal(dataset={"kind": "imagenet"}))
    assert "dataset" in msg and "'synthetic'" in msg and "'image_folder'" in msg
    msg = problems(minimal(target="biggest"))
    assert "target" in msg and "'predicted'" in msg


def test_method_settings_are_checked_against_the_registry():
    msg = problems(minimal(methods=[{"name": "integrated_gradients", "settings": {"n_step": 8}}]))
    assert "methods[0]: method 'integrated_gradients': unknown setting 'n_step'; valid settings are:" in msg
    msg = problems(minimal(methods=[{"name": "integrated_gradients", "settings": {"quadrature": "simpson"}}]))
    assert "quadrature='simpson' is not allowed" in msg
    msg = problems(minimal(methods=[{"name": "ig"}]))
    assert "unknown method 'ig'" in msg and "integrated_gradients" in msg


def test_duplicate_store_keys_are_refused():
    msg = problems(minimal(methods=[{"name": "gradient"}, {"name": "gradient"}]))
    assert "share the store key" in msg and "'gradient'" in msg
    ok = parse_config(minimal(methods=[{"name": "gradient"}, {"name": "gradient", "key": "grad2"}]))
    assert [m.store_key for m in ok.methods] == ["gradient", "grad2"]


def test_all_problems_reported_at_once():
    msg = problems(minimal(compute={"precision": "fp16", "n_actors": 0}, colour=1))
    assert msg.startswith("test.yaml: 3 problem(s)")


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)


@pytest.mark.parametrize("path", sorted((REPO / "deploy" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    load_config(path)


def test_demo_yaml_is_the_embedded_default():
    from pathatlas.flows.demo import demo_config

    assert yaml.safe_load((REPO / "deploy/configs/demo.yaml").read_text()) == demo_config()


def test_the_synthetic_section_is_the_library_config_with_every_knob():
    import numpy as np

    from pathatlas.attribution.data.synthetic import SyntheticConfig
    from pathatlas.attribution.run.builders import build_dataset

    flat = parse_config(
        minimal(dataset={"kind": "synthetic", "n_samples": 2, "global_amplitude": 0.0, "background_contrast": 0.0})
    )
    assert flat.dataset == SyntheticConfig(n_samples=2, global_amplitude=0.0, background_contrast=0.0)
    default = parse_config(minimal(dataset={"kind": "synthetic", "n_samples": 2}))
    a, b = (build_dataset(c).load(1).image for c in (flat, default))
    assert not np.allclose(a, b)  # the two knobs reach the generator
    assert flat.model_dump(mode="json")["dataset"]["background_contrast"] == 0.0
    msg = problems(minimal(dataset={"kind": "synthetic", "background_contrast": 2.0}))
    assert "dataset.synthetic: background_contrast must be in [0, 1], got 2.0" in msg


def test_channel_reduction_is_checked_against_the_registry():
    msg = problems(minimal(store={"uri": "x", "channel_reduction": "mean"}))
    assert "unknown channel reduction 'mean'" in msg and "abs_sum, sum, sum_abs" in msg
