"""The YAML files the package ships (training configs and ``wfb train-model`` recipes), listed without importing torch,
so that the command line can name them in its help at no cost."""

from __future__ import annotations

from importlib import resources

CONFIGS = "worldfromblur.configs"
RECIPES = "worldfromblur.recipes"


def shipped_names(package: str = CONFIGS) -> list[str]:
    """Names of the YAML files shipped in ``package`` (configs, or recipes for ``wfb train-model``)."""
    return sorted(p.name[:-5] for p in resources.files(package).iterdir() if p.name.endswith(".yaml"))
