"""The generated config reference: complete, in step with the models, and the README's copy current."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from pathatlas.attribution.methods import METHODS
from pathatlas.attribution.metrics import METRICS
from pathatlas.attribution.run import config_reference as ref
from pathatlas.attribution.run.config import ComputeConfig, RunConfig

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def text() -> str:
    return ref.config_reference()


def _row(text: str, key: str) -> list[str]:
    """The cells of the (first) table row whose key is ``key``."""
    for line in text.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"no row for {key!r}")


def _expected_default(section: type, name: str, tag: str | None) -> str:
    """The default as the models state it, read here without the renderer's field walk."""
    if tag is not None and name == "kind":
        return "required"
    if issubclass(section, BaseModel):
        info = section.model_fields[name]
        return "required" if info.is_required() else f"`{ref.render_value(info.get_default())}`"
    field = next(f for f in dataclasses.fields(section) if f.name == name)
    return f"`{ref.render_value(field.default)}`"


def test_every_key_of_every_section_has_a_row_with_its_default(text: str) -> None:
    sections = ref.config_sections()
    n_rows = 0
    for section, path, tag in sections:
        names = (
            list(section.model_fields)
            if issubclass(section, BaseModel)
            else [f.name for f in dataclasses.fields(section)]
        )
        block = text.split(f"**`{path}`" + (f", `kind: {tag}`" if tag else "") + "**", 1)[-1] if path else text
        for name in names:
            key = f"{path}.{name}" if path else name
            row = _row(block, key)
            assert row[2] == _expected_default(section, name, tag), (key, row)
            n_rows += 1
    assert n_rows == sum(line.startswith("| `") for line in text.split("| method |")[0].splitlines())
    # every section the config can hold is covered: each top-level section and each kind of a union
    for name, info in RunConfig.model_fields.items():
        held = ref.sections_in(info.annotation)
        for section in held:
            assert any(s is section for s, _, _ in sections), (name, section)
    kinds = {tag for _, path, tag in sections if path == "dataset"}
    assert kinds >= {"synthetic", "image_folder", "imagenet_val", "photos"}


def test_known_rows_read_as_intended(text: str) -> None:
    assert _row(text, "compute.max_attempts")[1:3] == ["`int 1–100`", "`3`"]
    assert _row(text, "compute.gpus_per_actor")[1:3] == ["`float in (0, 8]`", "`1.0`"]
    assert _row(text, "compute.precision")[1] == '`"fp32" \\| "bf16"`'
    assert _row(text, "compute.ray_address")[1:3] == ["`str \\| null`", "`null`"]
    assert _row(text, "preprocess.resize")[1] == '`int ≥ 1 \\| [int ≥ 1, int ≥ 1] \\| "auto" \\| null`'
    assert _row(text, "store.uri")[2] == "required"
    assert _row(text, "sanity.modes")[2] == '`["cascading", "independent"]`'
    assert _row(text, "target")[1] == '`"predicted" \\| "label" \\| int ≥ 0`'
    assert _row(text, "dataset")[1:3] == ["`section by kind`", "required"]
    assert _row(text, "patterns.dataset")[1] == "`section by kind \\| null`"


def test_tables_are_well_formed(text: str) -> None:
    """Each row has as many cells as its header: every ``|`` inside a cell is escaped."""
    columns = 0
    for line in text.splitlines():
        if not line.startswith("|"):
            columns = 0
            continue
        cells = len(re.split(r"(?<!\\)\|", line)) - 2
        columns = columns or cells
        assert cells == columns, line


def test_a_field_added_to_a_model_shows_up() -> None:
    class Knobs(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        new_knob: Annotated[int, Field(ge=1, le=9)] = 4
        described: str = Field("x", description="said by pydantic")
        ratio: float
        choice: Literal["a", "b"] | None = None

    rows = {r[0]: r for r in ref.section_rows(Knobs, "knobs", descriptions={"knobs.ratio": "from the dict"})}
    assert rows["`knobs.new_knob`"] == ("`knobs.new_knob`", "`int 1–9`", "`4`", "")
    assert rows["`knobs.described`"][2:] == ('`"x"`', "said by pydantic")
    assert rows["`knobs.ratio`"][1:] == ("`float`", "required", "from the dict")
    assert rows["`knobs.choice`"][1:3] == ('`"a" \\| "b" \\| null`', "`null`")

    class MoreCompute(ComputeConfig):  # a field added to a real section, and a new nested section
        spill_dir: str | None = None

    class Root(BaseModel):
        compute: MoreCompute = MoreCompute()
        knobs: Knobs | None = None

    out = ref.config_tables(Root)
    assert "| `compute.spill_dir` | `str \\| null` | `null` |" in out
    assert "| `compute.max_attempts` |" in out
    assert "**`knobs`**" in out and "| `knobs.new_knob` | `int 1–9` | `4` |" in out


def test_every_key_has_a_description_and_none_is_stale(text: str) -> None:
    keys, missing = set(), []
    for section, path, tag in ref.config_sections():
        for f in ref.section_fields(section):
            keys |= {f"{path}.{f.name}" if path else f.name, f"{path}[{tag}].{f.name}"}
            if not (f.description or ref.describe(path, f.name, tag)):
                missing.append(f"{path}[{tag}].{f.name}" if tag else f"{path}.{f.name}".lstrip("."))
    assert not missing, f"add a Field(description=...) or an entry in config_reference.DESCRIPTIONS for {missing}"
    stale = sorted(set(ref.DESCRIPTIONS) - keys)
    assert not stale, f"config_reference.DESCRIPTIONS names keys no section has: {stale}"


def test_every_method_and_metric_is_listed_with_its_settings(text: str) -> None:
    for registry, kind in ((METHODS, "method"), (METRICS, "metric")):
        table = text.split(f"| {kind} | settings (defaults) |", 1)[1].split("\n\n", 1)[0]
        for name, cls in registry.items():
            shown = f"{name}(base)" if hasattr(cls, "default_base") else name
            row = _row(table, shown)
            for f in dataclasses.fields(cls.Settings):
                assert f"{f.name}={ref.render_value(f.default)}" in row[1], (name, f.name, row[1])
            if not dataclasses.fields(cls.Settings):
                assert row[1] == "—"
            assert row[2], name
    smooth = _row(text, "smoothgrad(base)")
    assert smooth[1] == "`n_samples=25, noise=0.15, seed=0, base_settings={}`"
    assert "default `gradient`" in smooth[2]
    assert "default `integrated_gradients(n_steps=100)`" in _row(text, "xrai(base)")[2]
    assert _row(text, "integrated_gradients")[1].startswith('`output="logit", n_steps=50, quadrature="gausslegendre"')


def test_types_and_values_render_readably() -> None:
    assert ref.render_type(dict[str, int]) == "{str: int}"
    assert ref.render_type(tuple[float, ...]) == "[float, …]"
    assert ref.render_type(Annotated[list[str], Field(min_length=1)]) == "[str, …] non-empty"
    assert ref.render_type(Annotated[float, Field(ge=0, lt=1)]) == "float in [0, 1)"
    assert ref.render_type(Annotated[int, Field(gt=0, lt=10)]) == "int 1–9"
    assert ref.render_type(Annotated[float, Field(le=2)]) == "float ≤ 2"
    assert ref.render_value(tuple(range(13))) == "[0, 1, 2, …, 12] (13 values)"
    assert ref.render_value({"a": True}) == "{a: true}"
    assert typing.get_args(Literal["x"]) == ("x",)


def test_cli_checks_and_writes_the_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{ref.START}\nold table\n{ref.END}\nafter\n")
    assert ref.main(["--check", str(readme)]) == 1
    assert f"--write {readme}" in capsys.readouterr().out  # the hint says how to regenerate
    assert ref.main(["--write", str(readme)]) == 0
    written = readme.read_text()
    assert written.startswith("# Title\n\nbefore\n") and written.endswith(f"{ref.END}\nafter\n")
    assert ref.readme_block(written) == ref.config_reference().strip()
    assert ref.main(["--check", str(readme)]) == 0
    readme.write_text("no markers\n")
    assert ref.main(["--check", str(readme)]) == 1
    assert ref.main(["--write", str(readme)]) == 1 and readme.read_text() == "no markers\n"


def test_readme_block_is_up_to_date(text: str) -> None:
    block = ref.readme_block(README.read_text(encoding="utf-8"))
    if block is None:
        pytest.skip(f"README.md has no {ref.START} ... {ref.END} markers yet (the integrator adds them)")
    assert block == text.strip(), f"README.md's config reference is stale; run: {ref.COMMAND} --write README.md"
