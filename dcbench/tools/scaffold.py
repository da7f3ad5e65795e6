"""``dcbench new-method NAME``: write a plugin package that installs, registers and passes the kit.

The package is rendered from the plain-text templates in ``dcbench/templates/method/``
(``string.Template`` placeholders such as ``$name``); the generated method is a small but real
condensation method (mean-feature matching) that the author replaces with theirs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import keyword
from pathlib import Path
from string import Template

from dcbench import __version__
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import METHOD_NAME
from dcbench.plugins import ENTRY_POINT_GROUP, load_plugins

TEMPLATE_DIR = Path(__file__).parent / "templates" / "method"
#: template file -> where it goes in the package (a Template itself)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "$package/__init__.py",
    "method.py.tmpl": "$package/method.py",
    "test_method.py.tmpl": "tests/test_$name.py",
}
MAX_NAME_LENGTH = 40


def check_method_name(name: str) -> None:
    """Raise a one-line :class:`DcbenchError` unless ``name`` can be a new method and package name."""

    if not METHOD_NAME.match(name) or len(name) > MAX_NAME_LENGTH or keyword.iskeyword(name):
        raise DcbenchError(
            f"method name {name!r} must be 1-{MAX_NAME_LENGTH} lower-case letters, digits and '_', "
            "starting with a letter, and not a Python keyword (e.g. 'mymethod')"
        )
    registry = load_plugins()
    if name in registry.methods:
        raise DcbenchError(
            f"a method named {name!r} is already installed (plugin "
            f"{registry.owners[('method', name)]!r}); choose another name"
        )
    if any(ep.name == name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)):
        raise DcbenchError(f"a dcbench plugin named {name!r} is already installed; choose another name")
    if importlib.util.find_spec(f"dcbench_{name}") is not None:
        raise DcbenchError(f"a Python package dcbench_{name} is already importable; choose another name")


def scaffold_method(name: str, path: Path | None = None) -> Path:
    """Write the plugin package ``dcbench-NAME`` to ``path`` (default: ``./dcbench-NAME``) and return
    that directory. Refuses an invalid or taken name and an existing non-empty directory."""
    check_method_name(name)
    target = Path(path) if path is not None else Path.cwd() / f"dcbench-{name}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DcbenchError(f"{target} already exists and is not an empty directory; choose another --path or remove it")
    values = {
        "name": name,
        "package": f"dcbench_{name}",
        "distribution": f"dcbench-{name}",
        "class_prefix": "".join(part.capitalize() for part in name.split("_")),
        "dcbench_version": __version__,
    }
    for template_name, destination in LAYOUT.items():
        text = Template((TEMPLATE_DIR / template_name).read_text()).substitute(values)
        file = target / Template(destination).substitute(values)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return target
