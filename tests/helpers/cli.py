"""What a command prints when it refuses: one line on stderr."""

from __future__ import annotations


def one_line(err: str, prog: str) -> str:
    """The message of ``prog: error: MESSAGE\\n``, asserting ``err`` is exactly that one line."""
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1, err
    return err[len(f"{prog}: error: "):-1]
