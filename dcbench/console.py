"""The ``dcbench`` console script's entry point.

:mod:`dcbench.cli` imports torch and the whole package when it is imported, which takes seconds;
a Ctrl-C then would happen outside the command's own handler and print a ``KeyboardInterrupt``
traceback. This module imports only the standard library, so that the import of the command line
runs inside its handler: the same one line and exit status 130 as an interrupt during a command.
"""

from __future__ import annotations

import sys

#: what an interrupted command prints (dcbench.cli.main says the same for one during a command)
INTERRUPTED = "dcbench: interrupted; finished cells are kept, run the same command again to resume"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def main() -> int:
    try:
        from dcbench.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
