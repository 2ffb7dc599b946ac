"""Render the settings reference (README table and ``.env.example``) from ``settings.py`` itself.

``python -m kalshibook.settings_doc`` rewrites both; a test fails when they drift from the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kalshibook.settings import Settings, env_var

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_SRC = Path(__file__).with_name("settings.py")
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def field_docs() -> dict[tuple[str, str], str]:
    """(class name, field) -> the docstring written under the field in settings.py."""
    tree = ast.parse(SETTINGS_SRC.read_text())
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            nxt = body[i + 1] if i + 1 < len(body) else None
            if (
                isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[(node.name, stmt.target.id)] = " ".join(nxt.value.value.split())
    return docs


def rows() -> list[tuple[str, str, str]]:
    import msgspec

    docs = field_docs()
    defaults = Settings()
    out = []
    for section in msgspec.structs.fields(Settings):
        value = getattr(defaults, section.name)
        cls = type(value)
        for field in msgspec.structs.fields(cls):
            default = getattr(value, field.name)
            out.append(
                (
                    env_var(section.name, field.name),
                    str(default),
                    docs.get((cls.__name__, field.name), ""),
                )
            )
    return out


def readme_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var, default, doc in rows():
        shown = f"`{default}`" if default else "(empty)"
        lines.append(f"| `{var}` | {shown} | {doc.replace('|', '/')} |")
    return "\n".join(lines)


def env_example() -> str:
    out = ["# kalshibook configuration: every variable with its default.", ""]
    for var, default, doc in rows():
        if doc:
            out.append(f"# {doc}")
        out.append(f"{var}={default}")
    out += [
        "",
        "# compose.yaml only: the TimescaleDB password and the host port it is published on.",
        "POSTGRES_PASSWORD=change-me",
        "KALSHIBOOK_DB_PORT=5432",
        "# compose.yaml only: the collector's and the API's own least-privilege logins",
        "# (`kalshibook service-user create collector|api NAME`); empty: the owner's URL.",
        "KALSHIBOOK_COLLECTOR_DATABASE_URL=",
        "KALSHIBOOK_API_DATABASE_URL=",
    ]
    return "\n".join(out) + "\n"


def render_readme(text: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    return pattern.sub(BEGIN + "\n" + readme_table() + "\n" + END, text)


def main() -> None:
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text()))
    (ROOT / ".env.example").write_text(env_example())


if __name__ == "__main__":
    main()
