"""What an app's config keys mean, read from the Config dataclass's own source, so that the
CLI's ``spikegrad list APP`` and ``spikegrad run APP --help`` can never drift from the code.

A field's meaning is, in order of preference: an attribute docstring (a string on the line
after the field), ``#:`` comment lines right above it (Sphinx's convention), or the comment
at the end of its line. Base classes (e.g. a set-up's shared fields) are read too. The few
keys every app has and means the same by are described once, in :data:`COMMON`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any, Dict, List, NamedTuple

__all__ = ["Key", "COMMON", "field_docs", "describe", "format_keys"]

#: keys that mean the same in every app; an app's own doc for one of them wins
COMMON = {
    "seed": "seed of every random draw of the run (data split, initial weights, batches, "
            "input spikes)",
    "deterministic": "use torch's deterministic algorithms, so that a seed reproduces the "
                     "run bit for bit on the same machine",
    "progress": "print progress lines (epoch, loss, elapsed time, ETA)",
}


class Key(NamedTuple):
    """One config key as the CLI shows it."""
    name: str
    type: str        # e.g. "int", "float or None"
    default: Any     # the dataclass default
    resolved: Any    # the value validate() gives it with every other key at its default
    doc: str         # "" when the source says nothing


def _class_docs(klass) -> Dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):   # defined in a REPL or built dynamically: no source to read
        return {}
    comments: Dict[int, str] = {}   # line -> comment text (1-based, in ``source``)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
    lines = source.splitlines()
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: Dict[str, str] = {}
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[name] = " ".join(inspect.cleandoc(nxt.value.value).split())
            continue
        above, ln = [], node.lineno - 1
        while ln >= 1 and lines[ln - 1].strip().startswith("#:"):
            above.insert(0, lines[ln - 1].strip()[2:].strip())
            ln -= 1
        if above:
            docs[name] = " ".join(above)
            continue
        trailing = [comments[n].lstrip("#").lstrip(":").strip()
                    for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                    if n in comments and not lines[n - 1].strip().startswith("#")]
        if trailing:
            docs[name] = " ".join(trailing)
    return docs


def field_docs(cls) -> Dict[str, str]:
    """Field name -> its one-line meaning, for a dataclass and its dataclass bases."""
    docs: Dict[str, str] = dict(COMMON)
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_class_docs(klass))
    return docs


def _type_name(tp) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or None" if type(None) in args else "")
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def describe(app) -> List[Key]:
    """Every key of ``app.Config``: type, default, the value after ``app.validate`` (the
    dataset preset filled in) and meaning."""
    cfg_cls = app.Config
    hints = typing.get_type_hints(cfg_cls)
    docs = field_docs(cfg_cls)
    try:
        resolved = dataclasses.asdict(app.validate(cfg_cls()))
    except Exception:  # an app whose default needs a file; show the raw defaults
        resolved = {}
    keys = []
    for f in dataclasses.fields(cfg_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        keys.append(Key(f.name, _type_name(hints.get(f.name, f.type)), default,
                        resolved.get(f.name, default), docs.get(f.name, "")))
    return keys


def _show(value) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" or " " in value else value
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def format_keys(keys: List[Key], width: int = 100) -> str:
    """The keys as an aligned text table: ``name  type  default  meaning``, the meaning
    wrapped to ``width``; a default of ``None`` that the preset fills shows as
    ``None -> value``, and a long default pushes its meaning to the next line."""
    rows = []
    for k in keys:
        default = _show(k.default)
        if k.default is None and k.resolved is not None:
            default = f"None -> {_show(k.resolved)}"
        rows.append((k.name, k.type, default, k.doc))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = min(max(len(r[2]) for r in rows), 16)
    indent = 2 + w0 + 2 + w1 + 2 + w2 + 2
    out = []
    for name, tp, default, doc in rows:
        head = f"  {name:<{w0}}  {tp:<{w1}}  {default:<{w2}}  "
        wrapped = textwrap.wrap(doc, max(width - indent, 30))
        if len(head) > indent and wrapped:
            out.append(head.rstrip())
            head = " " * indent
        out.append(head + (wrapped[0] if wrapped else ""))
        out.extend(" " * indent + line for line in wrapped[1:])
    return "\n".join(line.rstrip() for line in out)
