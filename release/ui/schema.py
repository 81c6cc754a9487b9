"""The release config's JSON Schema and its reference page, both generated from the pydantic models.

`darwin-release schema` prints the schema (editors' YAML language servers read it:
`# yaml-language-server: $schema=config.schema.json`); docs/config.md is `reference_markdown()`, and a test
keeps it in sync. A key's description is the comment written next to it in release/config.py (above
it, or after it on its line), so a key added there with its comment appears here by itself.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import tokenize
from functools import lru_cache

from release import config as config_module
from release.config import ReleaseConfig

DOCS_PAGE = "docs/config.md"


@lru_cache(maxsize=1)
def _comments() -> dict[str, dict[str, str]]:
    """Class name -> field name -> the comment written next to that field in release/config.py."""
    source = inspect.getsource(config_module)
    by_line = {tok.start[0]: tok.string.lstrip("#").strip()
               for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    out: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = out.setdefault(node.name, {})
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, line = [], item.lineno - 1
            while line >= 1 and lines[line - 1].strip().startswith("#"):
                above.insert(0, by_line[line])
                line -= 1
            after = [by_line[n] for n in range(item.lineno, item.end_lineno + 1) if n in by_line]
            text = " ".join(above + after).strip()
            if text:
                fields[item.target.id] = text
    return out


def config_schema() -> dict:
    """ReleaseConfig's JSON Schema, each property described by its comment in release/config.py."""
    schema = ReleaseConfig.model_json_schema()
    comments = _comments()
    models = {"ReleaseConfig": schema, **schema.get("$defs", {})}
    for name, model in models.items():
        for field, text in comments.get(name, {}).items():
            prop = model.get("properties", {}).get(field)
            if prop is not None:
                prop.setdefault("description", text)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "darwin-release config"
    schema["description"] = ("A darwin-release config: one YAML file describes a whole release "
                             f"(reference: {DOCS_PAGE}).")
    return schema


# --- the reference page ------------------------------------------------------------------------------


def _ref_name(prop: dict) -> str | None:
    ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("anyOf", []) if "$ref" in a), None)
    if ref is None and prop.get("type") == "array":
        return _ref_name(prop.get("items", {}))
    return ref.rsplit("/", 1)[-1] if ref else None


def _type(prop: dict) -> str:
    if "$ref" in prop:
        return "mapping (below)"
    if "enum" in prop:
        return " | ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(dict.fromkeys(_type(a) for a in prop["anyOf"]))
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"mapping of {_type(extra)}" if isinstance(extra, dict) else "mapping"
    if kind == "null":
        return "null"
    bounds = [f"{sym} {prop[k]}" for k, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                                                 ("exclusiveMaximum", "<")) if k in prop]
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _default(model: dict, field: str, prop: dict) -> str:
    if field in model.get("required", []):
        return "**required**"
    if "default" not in prop:
        return ""
    value = prop["default"]
    if isinstance(value, dict) and value and _ref_name(prop):
        return "see below"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("<", "&lt;").replace("|", "\\|").replace("\n", " ")  # `<name>` is not an HTML tag


def reference_markdown() -> str:
    schema = config_schema()
    defs = schema.get("$defs", {})
    out = ["# Config reference", "",
           "<!-- Generated from the pydantic models in release/config.py by `darwin-release schema --markdown`;",
           "     tests/test_cli_help.py checks it is in sync. Edit the models and their comments, not this page. -->",
           "",
           "A release config is one YAML file. `darwin-release init` writes a commented starter; "
           "`darwin-release run CONFIG --plan` checks one without downloading weights; "
           "`darwin-release schema > config.schema.json` gives editors the JSON Schema "
           "(`# yaml-language-server: $schema=config.schema.json` on a config's first line).",
           "Unknown keys are errors. Below, each section is one mapping of the config.", ""]
    sections = [("", "ReleaseConfig", schema)]  # (path, model name, its schema), depth first
    while sections:
        path, name, model = sections.pop(0)
        out.append(f"## `{path}`" if path else "## top level")
        out.append("")
        doc = (getattr(config_module, name, None).__doc__ or "").strip() if name != "ReleaseConfig" else ""
        if doc and not doc.startswith(("Usage docs", "!!!")):
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        nested = []
        for field, prop in model.get("properties", {}).items():
            ref = _ref_name(prop)
            kind = _type(prop)
            if ref:
                key = f"{path}.{field}" if path else field
                key += "[]" if prop.get("type") == "array" or any(a.get("type") == "array" for a in prop.get("anyOf", [])) else ""
                kind = kind.replace("mapping (below)", f"mapping ([`{key}`](#{_anchor(key)}))")
                nested.append((key, ref, defs[ref]))
            out.append(f"| `{field}` | {_cell(kind)} | {_cell(_default(model, field, prop))} | "
                       f"{_cell(prop.get('description', ''))} |")
        out.append("")
        sections = nested + sections
    return "\n".join(out).rstrip() + "\n"


def _anchor(key: str) -> str:
    return "".join(c for c in key.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")

