"""Fuzz the command line with hostile input; one JSON line of counts.

    python benchmarks/fuzz_inputs.py                 # 2,000 cases
    python benchmarks/fuzz_inputs.py --cases 200 -v  # fewer, listing every breach

Each case mutates an example config, the LEGEND rate table, a run directory or the
command-line options (see tests/cli_fuzz.py) and runs the command in-process. Prints
``{"cases", "successes", "one_line_errors", "tracebacks", "seconds"}``; a "traceback"
counts every breach of the contract (exit code other than 0 / 2, more than one line on
stderr, a traceback, a temporary file left behind). Deterministic (hypothesis derandomised).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cli_fuzz import Tally, make_workspace, run_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("-v", "--verbose", action="store_true", help="print each breach to stderr")
    args = parser.parse_args()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: where a slow case spends its time
    ws = make_workspace()
    tally = Tally()
    start = time.perf_counter()

    @settings(max_examples=args.cases, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        problem = run_case(data, ws, tally)
        if problem is not None and args.verbose:
            print(problem, file=sys.stderr)
        if args.verbose and tally.cases % 100 == 0:
            print(f"-- {tally.cases} cases, {tally.tracebacks} breaches, {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)

    try:
        fuzz()
    finally:
        shutil.rmtree(ws.base, ignore_errors=True)
    print(json.dumps({"cases": tally.cases, "successes": tally.successes, "one_line_errors": tally.errors,
                      "tracebacks": tally.tracebacks, "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
