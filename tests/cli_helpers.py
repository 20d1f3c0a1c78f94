"""Running the `htr` command in-process, as the shell would (shared by the CLI tests)."""
from __future__ import annotations

from htr.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`htr ARGV` in-process, errors handled as by the `htr` command -> (exit status, stdout, stderr)."""
    code = 0
    try:
        main(list(argv), clean_errors=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
