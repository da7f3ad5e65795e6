"""Running the command line in-process and checking a refusal: exit status 2 and exactly one line,
``dcbench: error: ...`` (the hostile-input corpora under tests/acceptance)."""

from __future__ import annotations

from typing import Any

import pytest

from dcbench.cli import main


def cli(capsys: pytest.CaptureFixture, *args: Any) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def assert_refused(code: int, err: list[str], *fragments: str) -> None:
    """Exit 2 and exactly one line, 'dcbench: error: ...', containing every fragment."""
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("dcbench: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
