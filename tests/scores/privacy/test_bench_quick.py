"""`bench/bench_privacy.py --quick` runs, and its streamed and vectorised scores agree."""

import re

from tool_runs import run_script


def test_the_quick_bench_prints_a_ratio_agreement_and_peak_memory():
    done = run_script("bench/bench_privacy.py", "--quick", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cores;" in done.stdout  # the CPU features line
    agreement = re.search(r"ratio ([0-9.]+)x .*\|difference\| ([0-9.e+-]+)", done.stdout)
    assert agreement and float(agreement.group(2)) < 1e-9, done.stdout
    assert re.search(r"peak memory [0-9.]+ GB", done.stdout), done.stdout
