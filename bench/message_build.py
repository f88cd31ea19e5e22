"""Message building: the per-campaign MessageBuilder against one EmailMessage per recipient."""

from __future__ import annotations

import json

from mailadmin.mail.message import bench_build


def main(messages: int = 5000) -> None:
    print(json.dumps(bench_build(messages)), flush=True)


if __name__ == "__main__":
    main()
