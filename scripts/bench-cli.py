#!/usr/bin/env python3
"""What a CLI command costs with and without Python/JavaScript plugins
registered: data file size, wall time and peak RSS of each command, in one
run (two data directories, commands alternated, medians of 5).

    scripts/bench-cli.py   (after scripts/build-plugins.sh and a release build)
"""
import os, resource, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cascade = os.path.join(root, "target", "release", "cascade")
plugins = os.path.join(root, "target", "plugins")


def run(data, *args):
    """Wall time of one command."""
    started = time.perf_counter()
    done = subprocess.run([cascade, "--data", data, *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"{args}: {done.stderr}")
    return elapsed


def peak_rss_mib(data, *args):
    """Peak RSS of one command, measured in a fresh process of its own."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, cascade, "--data", data, *args], capture_output=True, text=True)
    return int(out.stdout) / 1024


def setup(data, extra):
    names = ["users", "accounts", "welcome", "user-counter"] + extra
    run(data, "plugin", "add", *[os.path.join(plugins, f"{n}.wasm") for n in names])
    for i in range(50):
        run(data, "exec", "users", f"u{i}", "create", f'{{"name":"user {i}"}}')


with tempfile.TemporaryDirectory() as rust, tempfile.TemporaryDirectory() as guests:
    setup(rust, [])
    setup(guests, ["welcome-py", "welcome-js", "user-counter-py", "user-counter-js"])
    size = lambda d: os.path.getsize(os.path.join(d, "cascade.redb")) / 2**20
    print(f"data file: Rust plugins only {size(rust):.1f} MiB; with 4 Python/JS plugins {size(guests):.1f} MiB")
    commands = [["plugin", "list"], ["events"], ["pm", "state", "user-counter"], ["parked"], ["verify"]]
    for command in commands:
        times = {rust: [], guests: []}
        for _ in range(5):
            for data in (rust, guests):
                times[data].append(run(data, *command))
        print(
            f"  {' '.join(command):<22} Rust only {statistics.median(times[rust]) * 1000:6.1f} ms   "
            f"with Python/JS {statistics.median(times[guests]) * 1000:6.1f} ms"
        )
    for command in (["plugin", "list"], ["events"]):
        print(
            f"  peak RSS of `{' '.join(command)}`: Rust only {peak_rss_mib(rust, *command):.0f} MiB, "
            f"with Python/JS {peak_rss_mib(guests, *command):.0f} MiB"
        )
    elapsed = run(guests, "exec", "users", "x1", "create", '{"name":"x"}')
    rss = peak_rss_mib(guests, "exec", "users", "x2", "create", '{"name":"y"}')
    print(f"  `exec` (loads and runs every plugin) with Python/JS: {elapsed * 1000:.0f} ms, peak RSS {rss:.0f} MiB")
