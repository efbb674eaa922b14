"""The command simulator runs its program without a shell: metacharacters in the config's
arguments and in θ values reach the program as literal text and are never interpreted."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from rarefy.simulators import CommandSimulator

ECHO_ARGS = """
import json, sys
import pandas as pd
out, argv = sys.argv[1], sys.argv[2:]
open(out + ".argv.json", "w").write(json.dumps(argv))
pd.DataFrame({"e": [0.1, 0.2, 0.3], "hit": [0, 1, 0]}).to_csv(out, index=False)
"""

HOSTILE = ["; touch {marker}", "$(touch {marker})", "`touch {marker}`", "| touch {marker}", "&& touch {marker}",
           "> {marker}", "*", "$HOME", "'quoted'", '"double"', "a\nnewline"]


def test_shell_metacharacters_are_passed_literally(tmp_path: Path) -> None:
    script = tmp_path / "echo_args.py"
    script.write_text(textwrap.dedent(ECHO_ARGS))
    marker = tmp_path / "pwned"
    args = [h.format(marker=marker) for h in HOSTILE]
    sim = CommandSimulator([sys.executable, str(script), "{output}", *args, "{theta[x]}"], output="events.csv",
                           events={"outcome": "hit"}, timeout_s=60, keep_scratch=True,
                           scratch_dir=tmp_path / "scratch")
    events = sim.simulate({"x": 0.25}, 3, "lf", 1)
    assert events.n == 3 and events.k == 1
    assert not marker.exists(), "an argument was interpreted by a shell"
    (argv_file,) = (tmp_path / "scratch").rglob("events.csv.argv.json")
    assert json.loads(argv_file.read_text()) == [*args, "0.25"]
