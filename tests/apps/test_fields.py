"""Config keys' meanings read from the dataclass source (what `spikegrad list APP` prints):
each of the three doc forms, inheritance, the shared glossary, and every shipped app
documented."""

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pytest

from spikegrad.apps import APPS, get_app
from spikegrad.apps.fields import COMMON, Key, describe, field_docs, format_keys


@dataclass
class _Base:
    shared: int = 1   # from the base class


@dataclass
class _Cfg(_Base):
    plain: int = 0
    trailing: float = 2.0   # a comment at the end of the line
    #: a comment above,
    #: over two lines
    above: str = "x"
    docstring: Optional[int] = None
    """An attribute docstring
    that wraps."""
    seed: int = 0
    progress: bool = True   # this app's own meaning wins


def test_each_doc_form_is_read_and_bases_and_glossary_fill_in():
    docs = field_docs(_Cfg)
    assert "plain" not in docs
    assert docs["trailing"] == "a comment at the end of the line"
    assert docs["above"] == "a comment above, over two lines"
    assert docs["docstring"] == "An attribute docstring that wraps."
    assert docs["shared"] == "from the base class"
    assert docs["seed"] == COMMON["seed"]
    assert docs["progress"] == "this app's own meaning wins"


def test_describe_shows_type_default_and_the_presets_value():
    class App:
        Config = _Cfg

        @staticmethod
        def validate(c):
            return dataclasses.replace(c, docstring=7)

    keys = {k.name: k for k in describe(App)}
    assert keys["docstring"] == Key("docstring", "int or None", None, 7,
                                    "An attribute docstring that wraps.")
    assert keys["trailing"].type == "float" and keys["trailing"].default == 2.0
    text = format_keys(list(keys.values()), width=80)
    line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("docstring"))
    assert "None -> 7" in line and "An attribute docstring" in line
    assert max(map(len, text.splitlines())) <= 80


@pytest.mark.parametrize("name", sorted(APPS))
def test_every_key_of_every_app_says_what_it_means(name):
    undocumented = [k.name for k in describe(get_app(name)) if not k.doc]
    assert not undocumented, f"{name}: document these Config fields: {undocumented}"
