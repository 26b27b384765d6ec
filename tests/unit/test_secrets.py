"""Credentials in storage options: redacted wherever they are written, resolved only where used."""

from __future__ import annotations

import pytest

from pathatlas.attribution.run.config import parse_config
from pathatlas.attribution.run.plan import public_config
from pathatlas.attribution.run.secrets import REDACTED, literal_secrets, redacted, redacted_config, resolved
from tests.flows.conftest import small_config

OPTIONS = {
    "key": "AKIAEXAMPLE",
    "secret": "s3cr3t-value",
    "token": None,
    "anon": False,
    "endpoint_url": "http://127.0.0.1:5000",
    "client_kwargs": {"region_name": "us-east-1", "aws_session_token": "tok-value"},
    "account_key": "${AZ_KEY}",
    "connection_string": "DefaultEndpointsProtocol=https;AccountKey=abc",
}


def test_secret_looking_values_are_redacted_and_the_rest_kept():
    out = redacted(OPTIONS)
    assert out["key"] == out["secret"] == out["connection_string"] == REDACTED
    assert out["client_kwargs"] == {"region_name": "us-east-1", "aws_session_token": REDACTED}
    assert out["token"] is None  # nothing to hide
    assert out["anon"] is False and out["endpoint_url"] == "http://127.0.0.1:5000"
    assert out["account_key"] == "${AZ_KEY}"  # a variable's name, not its value
    assert sorted(literal_secrets(OPTIONS)) == [
        "store.storage_options.client_kwargs.aws_session_token",
        "store.storage_options.connection_string",
        "store.storage_options.key",
        "store.storage_options.secret",
    ]


def test_references_resolve_from_the_environment_or_name_the_missing_variable(monkeypatch):
    monkeypatch.setenv("AZ_KEY", "from-env")
    assert resolved({"account_key": "${AZ_KEY}", "nested": {"x": "${AZ_KEY}"}, "n": 1}) == {
        "account_key": "from-env",
        "nested": {"x": "from-env"},
        "n": 1,
    }
    assert resolved({"half": "prefix-${AZ_KEY}"}) == {"half": "prefix-${AZ_KEY}"}  # whole values only
    monkeypatch.delenv("AZ_KEY")
    with pytest.raises(ValueError, match=r"store.storage_options.account_key refers to .*AZ_KEY, which is not set"):
        resolved({"account_key": "${AZ_KEY}"})


def test_stored_and_reported_config_holds_no_credential(tmp_path):
    cfg = parse_config(small_config(tmp_path, store={"uri": str(tmp_path / "s.zarr"), "storage_options": OPTIONS}))
    text = repr(public_config(cfg))
    for value in ("AKIAEXAMPLE", "s3cr3t-value", "tok-value", "AccountKey=abc"):
        assert value not in text
    assert "http://127.0.0.1:5000" in text
    assert redacted_config({"store": {"uri": "x"}}) == {"store": {"uri": "x"}}


def test_prefect_flow_run_parameters_are_redacted(tmp_path, prefect_harness):
    """The flow body gets the credentials; the parameters Prefect stores do not hold them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from pathatlas.flows.explain import flow

    @flow("secret-probe")
    def probe(config: dict) -> tuple[str, str]:
        from prefect.runtime import flow_run

        return config["store"]["storage_options"]["secret"], str(flow_run.get_id())

    seen, run_id = probe({"store": {"uri": "s3://b/x.zarr", "storage_options": {"secret": "s3cr3t-value"}}})
    assert seen == "s3cr3t-value"
    with get_client(sync_client=True) as client:
        (stored,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    assert stored.parameters["config"]["store"]["storage_options"] == {"secret": REDACTED}


def test_validate_warns_about_a_credential_written_into_the_config(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from pathatlas.flows.cli import app

    cfg = small_config(tmp_path, store={"uri": str(tmp_path / "s.zarr"), "storage_options": {"secret": "abc"}})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = CliRunner().invoke(app, ["validate", str(path)])
    assert out.exit_code == 0, out.output
    assert "store.storage_options.secret holds a credential" in " ".join(out.output.split())
    cfg["store"]["storage_options"] = {"secret": "${SOME_SECRET}"}
    path.write_text(yaml.safe_dump(cfg))
    assert "credential" not in CliRunner().invoke(app, ["validate", str(path)]).output
