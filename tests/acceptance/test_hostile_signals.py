"""The hostile-input corpus, signals and resources: one test per finding, each reproducing it.

Findings: a Ctrl-C while the command line is still importing, a Ctrl-C to a grid running in worker
processes, and an explicit ``--workers`` beyond the machine's cores or memory. Every case ends in
one line on stderr, never a traceback, and leaves no process writing to the store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dcbench.host.compat import tomllib

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


def console_script_target() -> tuple[str, str]:
    """(module, function) that ``pip install`` makes the ``dcbench`` script call."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["dcbench"].partition(":")
    return module, function


def test_an_interrupt_while_the_command_line_imports_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Seen: Ctrl-C in the first seconds of ``dcbench ...`` (while torch imports) printed a
    ``KeyboardInterrupt`` traceback: the console script imported dcbench.cli, and torch with it,
    before main()'s handler could run. Here the import of torch is interrupted, as a Ctrl-C then
    would, in a process started like the installed script (its wrapper imports the target module
    and calls the function, outside any handler)."""
    module, function = console_script_target()
    script = textwrap.dedent(
        f"""
        import builtins, sys
        real_import = builtins.__import__

        def interrupted_import(name, *args, **kwargs):
            if name == "torch" or name.startswith("torch."):
                raise KeyboardInterrupt  # what Ctrl-C raises in the middle of an import
            return real_import(name, *args, **kwargs)

        builtins.__import__ = interrupted_import
        from {module} import {function}
        sys.exit({function}())
        """
    )
    result = subprocess.run([sys.executable, "-c", script, "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [interrupted_during_a_command(monkeypatch, capsys)]


def interrupted_during_a_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """The line dcbench.cli.main prints for a Ctrl-C during a command (``dcbench list`` here)."""
    import dcbench.cli

    def interrupt(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(dcbench.cli, "cmd_list", interrupt)
    capsys.readouterr()
    assert dcbench.cli.main(["list"]) == 130
    return capsys.readouterr().err.strip()
