"""Run the benchmarks: `python -m bench` runs every one in turn (what `make bench` does).

`python -m bench NAME [options]` runs only NAME (`message_build`, `send_loop`, `dashboard`, `audience_import`, `segments`, `metrics`, `api` or `events_burst`);
`send_loop` takes its own options (`--help`), e.g. the loopback figures alone:

    python -m bench send_loop --relay-messages 0 --memory-recipients 0 --start-recipients 0
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("message_build", "send_loop", "dashboard", "audience_import", "segments", "metrics", "api", "events_burst")


# The benchmarks whose main() takes command-line options.
WITH_OPTIONS = ("send_loop",)


def run(names: tuple[str, ...], options: list[str] | None = None) -> int:
    from mailadmin.logging import reset_logging

    failed = 0
    for name in names:
        try:
            benchmark = importlib.import_module(f"bench.{name}")
            # Those with options get a list always: given None, argparse would read `bench NAME` from sys.argv.
            benchmark.main(options or []) if name in WITH_OPTIONS else benchmark.main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"bench.{name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
        finally:
            # A benchmark may point the log sink at a stream it has since closed.
            reset_logging()
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv:
        return run(BENCHMARKS)
    name, *options = argv
    if name not in BENCHMARKS or (options and name not in WITH_OPTIONS):
        print(f"usage: python -m bench [{' | '.join(BENCHMARKS)}] (options for {', '.join(WITH_OPTIONS)} only)",
              file=sys.stderr)
        return 2
    return run((name,), options)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
