"""Running `flask doctor` in-process and reading its report."""

from __future__ import annotations


def doctor(runner, *args: str) -> tuple[int, str]:
    """Run the doctor command in-process; returns (exit code, output)."""
    result = runner.invoke(args=["doctor", *args])
    return result.exit_code, result.output


def status_of(output: str, key: str) -> str:
    """The status word the doctor printed for `key`."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == key:
            return parts[0].lower()
    raise AssertionError(f"no line for {key!r} in:\n{output}")
