"""The matrix reference, docs/matrix-reference.md, rendered from the schema in harness/config.py.

Every key of a matrix file with its type, default and meaning: the meaning is the field's `description`, else the
comment on its line in config.py's source (read with ast and tokenize; config.py itself is not changed for this).

    python -m harness.docs > docs/matrix-reference.md   # regenerate; tests/test_docs.py checks it is current
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import textwrap
import tokenize
import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness import config

ROOT = config.MatrixSpec
PRAGMA = re.compile(r"^(type:\s*ignore(\[[^\]]*\])?|noqa(:\s*[A-Z0-9, ]+)?)\s*(#\s*)?")


def _yaml(value: Any) -> str:
    """A default as it would be written in the matrix file (flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _specs_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec classes an annotation names, at any depth (list[ModelSpec] -> [ModelSpec])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [s for arg in typing.get_args(annotation) for s in _specs_in(arg)]


# annotated_types bound -> (its attribute, how the reference writes it)
_BOUNDS = {annotated_types.Gt: ("gt", "> {}"), annotated_types.Ge: ("ge", ">= {}"), annotated_types.Lt: ("lt", "< {}"),
           annotated_types.Le: ("le", "<= {}"), annotated_types.MinLen: ("min_length", "at least {}"),
           annotated_types.MaxLen: ("max_length", "at most {}")}


def _constraints(metadata: list) -> str:
    out = []
    for m in metadata:
        if bound := _BOUNDS.get(type(m)):
            out.append(bound[1].format(getattr(m, bound[0])))
        elif getattr(m, "pattern", None):
            out.append(f"matching {m.pattern}")
    return f" ({', '.join(out)})" if out else ""


def _type(annotation: Any, metadata: list = ()) -> str:
    """A readable type: `int (> 0) | null`, `list[ModelSpec]`, `"letter" | "cloze"`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        text = "null"
    elif origin is Annotated:
        text = _type(args[0], list(annotation.__metadata__))
    elif origin is Literal:
        text = " | ".join(f'"{a}"' for a in args)
    elif origin in (Union, types.UnionType):
        text = " | ".join(_type(a) for a in args)
    elif origin is not None:
        text = f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    else:
        text = getattr(annotation, "__name__", str(annotation))
    return text + _constraints(list(metadata))


def _comment(text: str) -> str:
    text = text.lstrip("#").strip()
    while (m := PRAGMA.match(text)) and m.group(0):
        text = text[m.end():].strip()
    return text


def _source_comments(cls: type) -> tuple[dict[str, str], dict[str, str]]:
    """Per field of `cls`: the comments on its own lines, and a block of comment lines standing just above it."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    alone: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string
            if not tok.line[:tok.start[1]].strip():
                alone.add(tok.start[0])
    body = ast.parse(source).body[0].body
    trailing, above = {}, {}
    previous_end = 0
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
            own = [_comment(comments[n]) for n in range(node.lineno, node.end_lineno + 1)
                   if n in comments and n not in alone]
            trailing[name] = " ".join(c for c in own if c)
            block = [n for n in range(previous_end + 1, node.lineno) if n in alone]
            above[name] = " ".join(_comment(comments[n]) for n in block)
        previous_end = node.end_lineno
    return trailing, above


def _walk(cls: type[BaseModel], path: str, found: dict[type, list[str]]) -> None:
    found.setdefault(cls, []).append(path)
    if len(found[cls]) > 1:
        return
    for name, field in cls.model_fields.items():
        many = typing.get_origin(field.annotation) is list
        for spec in _specs_in(field.annotation):
            _walk(spec, f"{path}.{name}{'[]' if many else ''}".lstrip("."), found)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _section(cls: type[BaseModel], paths: list[str]) -> list[str]:
    trailing, above = _source_comments(cls)
    where = ", ".join(f"`{p}`" for p in paths) if paths != [""] else "the top level of the file"
    out = [f"## {cls.__name__}", "", f"Where: {where}."]
    if cls.__doc__ and "__doc__" in vars(cls):
        out += ["", inspect.getdoc(cls)]
    out += ["", "| key | type | default | meaning |", "|---|---|---|---|"]
    notes = []
    for name, field in cls.model_fields.items():
        kind = _type(field.annotation, field.metadata)
        specs = _specs_in(field.annotation)
        kind_cell = f"`{_cell(kind)}`" + "".join(f" ([{s.__name__}](#{s.__name__.lower()}))" for s in specs)
        if field.default is PydanticUndefined and field.default_factory is None:
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = "its keys' defaults" if isinstance(value, BaseModel) else f"`{_cell(_yaml(value))}`"
        meaning = field.description or trailing.get(name, "")
        if above.get(name):
            if meaning:
                notes.append(f"- Above `{name}`: {above[name]}")
            else:
                meaning = above[name]
        if any(type(m).__name__ == "BeforeValidator" for m in field.metadata):
            meaning += (" " if meaning else "") + "(shorthand accepted: see harness/config.py)"
        out.append(f"| `{name}` | {kind_cell} | {default} | {_cell(meaning)} |")
    if notes:
        out += ["", "Comments in harness/config.py between these keys:", "", *notes]
    return out


def matrix_reference() -> str:
    """docs/matrix-reference.md: one section per spec class, from the matrix's top level down."""
    found: dict[type, list[str]] = {}
    _walk(ROOT, "", found)
    strict = ROOT.model_config.get("strict") and ROOT.model_config.get("extra") == "forbid"
    lines = [
        "# Matrix reference",
        "",
        "Every key a matrix file may hold, with its type, default and meaning. Generated from the schema in",
        "`harness/config.py` by `python -m harness.docs > docs/matrix-reference.md`; do not edit it by hand",
        "(`tests/test_docs.py` checks that it is current). How to write a matrix: [Writing a matrix](matrix.md).",
        "",
        "`null` (or leaving the key out) is what the comments call None; `required` keys have no default."
        + (" Every section is strict: an unknown key is an error, and a boolean or a string is not a number."
           if strict else ""),
        "",
        "Sections: " + ", ".join(f"[{c.__name__}](#{c.__name__.lower()})" for c in found) + ".",
    ]
    for cls, paths in found.items():
        lines += ["", *_section(cls, paths)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(matrix_reference(), end="")
