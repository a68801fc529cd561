"""Soak: three `ackhub serve` processes on one fresh PostgreSQL database, one of them SIGKILLed at random
moments and restarted, `--kills` times (100 by default; the test suite does 20), while publishers on all
three and agencies streaming from different ones keep going. Then the same checks as the test
(tests/test_cluster_crash.py): every receipted record stored exactly once, every delivery closed as its
route requires, every acknowledgement a recipient was told was stored kept, at most one escalation case
per delivery, and `ackhub audit verify` OK. It prints what it did and exits non-zero if a check failed.

    .venv/bin/python -m bench.cluster_soak                 # 100 kills, seed 16
    .venv/bin/python -m bench.cluster_soak --kills 300 --seed 7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--kills", type=int, default=100, help="SIGKILLs, each followed by a restart (default 100)"
    )
    parser.add_argument("--seed", type=int, default=16, help="seed of the victims and moments (default 16)")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error("--kills must be at least 1")
    env = {**os.environ, "ACKHUB_TEST_KILLS": str(args.kills), "ACKHUB_TEST_SEED": str(args.seed)}
    print(f"cluster soak: 3 processes, {args.kills} kills, seed {args.seed} …", flush=True)
    began = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "-o",
            f"timeout={600 + 10 * args.kills}",
            "tests/test_cluster_crash.py::test_three_processes_killed_at_random_lose_nothing",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = [line for line in run.stdout.splitlines() if " kills " in line and "records over" in line]
    print(*(summary or ["(no summary: see below)"]), sep="\n")
    print(f"{'passed' if run.returncode == 0 else 'FAILED'} in {time.monotonic() - began:.0f} s")
    if run.returncode != 0:
        print(run.stdout[-6000:], run.stderr[-3000:], sep="\n")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
