"""Every public object of spikegrad documents itself, so that the API reference
(``make docs``) has no empty entries: each public function and class has its own
docstring, and each public ``nn.Module``'s ``forward`` has one of its own (not torch's
inherited "Define the computation performed at every call")."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types

import pytest
import torch

import spikegrad

# the packages the API reference renders (mkdocs.yml / docs/api/)
# (sg.readout is spikegrad.functional.readout)
PACKAGES = [spikegrad] + [getattr(spikegrad, name) for name in spikegrad.__all__
                          if inspect.ismodule(getattr(spikegrad, name))]
PACKAGES += [importlib.import_module("spikegrad.nn.init")]
TORCH_FORWARD_DOC = torch.nn.Module.forward.__doc__


def _public(module: types.ModuleType):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", "").startswith(module.__name__)]
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj


def _objects():
    seen = {}
    for package in PACKAGES:
        for path, obj in _public(package):
            seen.setdefault(id(obj), (path, obj))
    return sorted(seen.values(), key=lambda item: item[0])


OBJECTS = _objects()
MODULES = [(p, o) for p, o in OBJECTS if inspect.isclass(o) and issubclass(o, torch.nn.Module)]


def _generated_doc(cls) -> bool:
    """The docstring NamedTuple and dataclass write when the class has none."""
    doc = cls.__doc__ or ""
    if hasattr(cls, "_fields") and doc == f"{cls.__name__}({', '.join(cls._fields)})":
        return True
    return dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")


def test_the_lists_are_not_empty():
    assert len(OBJECTS) > 200 and len(MODULES) > 30


@pytest.mark.parametrize("path, obj", OBJECTS, ids=[p for p, _ in OBJECTS])
def test_public_object_has_its_own_docstring(path, obj):
    doc = obj.__doc__
    assert doc and doc.strip(), f"{path} has no docstring"
    if inspect.isclass(obj):
        assert not _generated_doc(obj), f"{path} has only the generated docstring {doc!r}"


@pytest.mark.parametrize("path, cls", MODULES, ids=[p for p, _ in MODULES])
def test_module_forward_is_documented(path, cls):
    forward = cls.forward
    if forward is torch.nn.Module.forward or forward.__name__ == "_forward_unimplemented":
        # a module that defines no computation (e.g. the robust priors, parameter holders
        # used through kl()): calling it raises NotImplementedError, nothing to document
        assert "forward" not in vars(cls)
        return
    doc = forward.__doc__
    assert doc and doc.strip() and doc != TORCH_FORWARD_DOC, (
        f"{path}.forward ({forward.__qualname__}) has no docstring of its own")
