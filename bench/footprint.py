"""What an idle server holds in memory: its resident set, read from /proc.

    .venv/bin/python bench/footprint.py [--idle 3]

Starts `workflow-engine serve` on the embedded default (a SQLite file in a temporary folder,
the in-process worker, the demo MCP services, the offline LLM), waits until /health answers
and `--idle` seconds more, then prints the server's resident set (VmRSS) and its peak
(VmHWM) as a markdown table row, and stops it. Linux only: the figures come from
/proc/<pid>/status, as the kernel accounts them (shared library pages included).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from harness import free_port, process_env, start, wait_healthy

ROW_NAME = "idle server with its embedded worker (SQLite)"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])  # "123456 kB"
    raise LookupError(f"no {field} in /proc/{pid}/status (a kernel thread, or not Linux?)")


def rss_mb(pid: int) -> float:
    """The resident set of process `pid` now, in MB (VmRSS; 1 MB = 1024 KiB)."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The largest resident set process `pid` has had so far, in MB (VmHWM)."""
    return _status_kib(pid, "VmHWM") / 1024


async def idle_server(idle_seconds: float) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of a default server left idle for `idle_seconds` once healthy."""
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        port = free_port()
        server = start("serve", work, process_env(work, None, PORT=str(port)), "server")
        try:
            await wait_healthy(f"http://127.0.0.1:{port}", server, work / "server.log")
            await asyncio.sleep(idle_seconds)
            return rss_mb(server.pid), peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=3, help="Seconds idle once healthy.")
    args = parser.parse_args()
    rss, peak = asyncio.run(idle_server(args.idle))
    print("| target | resident (VmRSS) | peak (VmHWM) |\n|---|---|---|")
    print(f"| {ROW_NAME} | {rss:.1f} MB | {peak:.1f} MB |")


if __name__ == "__main__":
    main()
