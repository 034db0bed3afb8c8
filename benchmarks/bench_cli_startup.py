"""Start-up cost of the command line: ``eossl pretrain --help`` and ``eossl evaluate --help`` against
``python -c 'import torch'`` (issue 24's target: each --help under 0.5 s and 100 MB peak).

Each case runs in a fresh child process, ``--repeats`` times (the first run of each case is a warm-up, not
reported, so every figure is a warm file cache). Per case the table shows the median and the worst wall time,
and the largest peak resident set size of the child (``ru_maxrss`` of ``resource.getrusage(RUSAGE_CHILDREN)``, measured
by a small wrapper process per run so each figure is one run's own peak; the wrapper's own interpreter, about
10 MB, is not subtracted), and whether torch was loaded.

    .venv/bin/python benchmarks/bench_cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CASES = {
    "python -c pass": ["-c", "pass"],
    "eossl --help": ["-c", "from eossl.cli import main; main(['--help'])"],
    "eossl pretrain --help": ["-c", "from eossl.cli import main; main(['pretrain', '--help'])"],
    "eossl evaluate --help": ["-c", "from eossl.cli import main; main(['evaluate', '--help'])"],
    "python -c 'import torch'": ["-c", "import torch"],
}

# runs one child and reports its wall time, peak RSS and whether it loaded torch
_WRAPPER = """
import json, resource, subprocess, sys, time
argv = json.loads(sys.argv[1])
code = ("try:\\n    " + argv[1] + "\\nexcept SystemExit:\\n    pass\\n"
        "import sys as _s; print('TORCH' if 'torch' in _s.modules else 'NO-TORCH')")
start = time.perf_counter()
out = subprocess.run([sys.executable, argv[0], code], capture_output=True, text=True)
wall = time.perf_counter() - start
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall": wall, "rss_mb": rss_kb / 1024, "torch": "NO-TORCH" not in out.stdout}))
"""


def measure(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(args)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args()
    rows = []
    for name, args in CASES.items():
        measure(args)                                    # warm-up
        runs = [measure(args) for _ in range(opts.repeats)]
        walls = [r["wall"] for r in runs]
        rows.append((name, statistics.median(walls), max(walls), max(r["rss_mb"] for r in runs), runs[0]["torch"]))
    print(f"{opts.repeats} runs per case after one warm-up; python {sys.version.split()[0]}\n")
    print(f"{'case':28s} {'median s':>9s} {'max s':>7s} {'peak RSS MB':>12s} {'torch':>6s}  target (<0.5 s, <100 MB)")
    for name, med, worst, rss, torch in rows:
        target = ("met" if worst < 0.5 and rss < 100 else "MISSED") if "--help" in name else ""
        print(f"{name:28s} {med:9.3f} {worst:7.3f} {rss:12.1f} {'yes' if torch else 'no':>6s}  {target}")


if __name__ == "__main__":
    main()
