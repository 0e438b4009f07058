"""Every app has the one shape the CLI, sweeps and `make results` rely on."""

import dataclasses
import inspect

import pytest

from spikegrad.apps import APPS, get_app
from spikegrad.apps.config import ConfigError, resolve_config
from spikegrad.apps.report import Result


@pytest.mark.parametrize("name", sorted(APPS))
def test_app_has_config_validate_run_and_methods(name):
    app = get_app(name)
    assert dataclasses.is_dataclass(app.Config)
    cfg = app.validate(app.Config())
    assert isinstance(cfg, app.Config)
    assert app.validate(cfg) == cfg          # idempotent: presets filled once
    assert list(inspect.signature(app.run).parameters)[:3] == ["cfg", "out_dir", "resume"]
    assert inspect.signature(app.run).return_annotation in (Result, "Result")
    assert "Methods" in app.__doc__ or len(app.__doc__.splitlines()) > 5


def test_an_app_without_validate_is_refused_by_the_cli_path():
    class NotAnApp:
        Config = dataclasses.make_dataclass("Config", [("seed", int, 0)])

    with pytest.raises(TypeError, match="has no validate"):
        resolve_config(NotAnApp, NotAnApp.Config())
    with pytest.raises(ConfigError):
        resolve_config(get_app("classification"), get_app("classification").Config(lr=-1.0))
