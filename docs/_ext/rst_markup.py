"""Griffe extension for the docs build: spikegrad's docstrings use a little reStructuredText
(Sphinx roles, ``::`` literal blocks, one simple table); mkdocstrings renders Markdown. This
rewrites, per docstring, before it is parsed:

* ``:func:`x``` / ``:class:`~x``` ... -> an optional cross-reference (a link when ``x`` is
  rendered in the API reference, else plain code: never a broken-link warning); relative
  targets (``.module``, ``name``) are resolved against the docstring's module or class;
* a paragraph ending in ``::`` -> ``:`` (the indented block after it is a code block in
  Markdown too);
* a simple table (``=== ===`` borders) -> a fenced text block;
* the first line of a ``Returns:`` / ``Yields:`` section: its colons (outside code) become
  ``&#58;``, so that griffe reads the whole section as a description (our Returns sections
  are prose, and ``(zs, state): spikes ...`` is not a type);
* a doctest (``>>>`` lines and their output) -> a fenced ``pycon`` block (griffe reads
  ``Example:`` as an admonition, whose ``>>>`` lines Markdown would take for quotes).
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_BORDER = re.compile(r"^\s*=+( +=+)+\s*$")


def _target(obj: griffe.Object, target: str) -> str:
    module = obj.module
    package = module.path if module.is_init_module else module.parent.path
    if target.startswith("."):
        return package + target
    if target.startswith(("spikegrad.", "torch.", "numpy.")) or target == "spikegrad":
        return target
    # a name in the same class (methods), else in the same module
    scope = obj if obj.is_class else obj.parent if obj.parent is not None else module
    if scope is not None and scope.is_class:
        return f"{scope.path}.{target}"
    return f"{module.path}.{target}"


def _roles(obj: griffe.Object, text: str) -> str:
    def link(match: re.Match) -> str:
        short, target = match.group(1), match.group(2).strip()
        title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
        ident = _target(obj, target)
        if ident.startswith(("torch.", "numpy.")):
            return f"`{title}`"
        return f'<autoref identifier="{ident}" optional>`{title}`</autoref>'
    return _ROLE.sub(link, text)


def _literal_blocks(text: str) -> str:
    out = []
    for line in text.split("\n"):
        stripped = line.rstrip()
        if stripped.endswith("::"):
            stripped = stripped[:-2].rstrip()
            if stripped and not stripped.endswith(":"):
                stripped += ":"
            if not stripped.strip():
                continue
        out.append(stripped if line.rstrip().endswith("::") else line)
    return "\n".join(out)


def _tables(text: str) -> str:
    lines, out, borders = text.split("\n"), [], 0
    for line in lines:
        if _BORDER.match(line):
            if borders == 0:
                out += ["", "```text"]
            out.append(line)
            borders += 1
            if borders == 3:
                out += ["```", ""]
                borders = 0
            continue
        out.append(line)
    return "\n".join(out)


_SECTION = re.compile(r"^(\s*)(Returns|Yields):\s*$")
_CODE = re.compile(r"(`+)(.+?)\1")


def _returns(text: str) -> str:
    lines = text.split("\n")
    for k, line in enumerate(lines[:-1]):
        if _SECTION.match(line):
            first = lines[k + 1]
            parts, last = [], 0
            for m in _CODE.finditer(first):
                parts += [first[last:m.start()].replace(":", "&#58;"), m.group(0)]
                last = m.end()
            lines[k + 1] = "".join(parts) + first[last:].replace(":", "&#58;")
    return "\n".join(lines)


def _doctests(text: str) -> str:
    out, block, indent = [], [], ""

    def close():
        if block:
            # no blank line right after a header ("Example:"): griffe needs the indented
            # block to follow it directly to read it as an admonition
            previous = out[-1].strip() if out else ""
            lead = [""] if previous and not previous.endswith(":") else []
            out.extend([*lead, indent + "```pycon", *block, indent + "```", ""])
            block.clear()

    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            if not block:
                indent = line[:len(line) - len(stripped)]
            block.append(line)
        elif block and stripped and line.startswith(indent):
            block.append(line)     # continuation (...) or expected output
        else:
            close()
            out.append(line)
    close()
    return "\n".join(out)


class RstMarkup(griffe.Extension):
    """Rewrite the reST bits of every docstring into Markdown (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: D102
        if obj.docstring is None:
            return
        value = obj.docstring.value
        if not any(mark in value for mark in ("`", "::", "===", ">>>", "Returns:", "Yields:")):
            return
        obj.docstring.value = _doctests(_returns(_roles(obj, _tables(_literal_blocks(value)))))
