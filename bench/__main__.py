"""Run every benchmark in turn: `python -m bench` (what `make bench` does)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("bench.message_build", "bench.send_loop", "bench.dashboard")


def main() -> int:
    from mailadmin.logging import reset_logging

    failed = 0
    for name in BENCHMARKS:
        try:
            importlib.import_module(name).main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"{name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
        finally:
            # A benchmark may point the log sink at a stream it has since closed.
            reset_logging()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
