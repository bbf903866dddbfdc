"""The do-it-yourself baseline: a shell loop of `ssh-keygen -s` over fresh public keys.

One `ssh-keygen -s CA -I ID -n alice -V +30m -z SERIAL KEY.pub` per certificate, run one after
another by bash, as a script around a CA file would; the rate is certificates per wall second
of the whole loop. No audit, no policy, no network: the floor for "just sign it".
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Processes, wait_for_exit

LOOP = """\
set -e
for i in $(seq 1 "$1"); do
  ssh-keygen -q -s "$2/ca" -I "bench-$i" -n alice -V +30m -z "$i" "$2/keys/k$i.pub" 2>/dev/null
done
"""


@dataclass(frozen=True)
class KeygenResult:
    certificates: int
    seconds: float
    cpu_s: float

    @property
    def per_second(self) -> float:
        return self.certificates / self.seconds


def run(processes: Processes, workdir: Path, public_keys: list[str], count: int) -> KeygenResult:
    """Sign `count` keys (cycling through `public_keys`) with a fresh Ed25519 CA."""
    keys = workdir / "keys"
    keys.mkdir(parents=True)
    for i in range(1, count + 1):
        (keys / f"k{i}.pub").write_text(public_keys[(i - 1) % len(public_keys)] + "\n")
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "bench-ca",
            "-f",
            str(workdir / "ca"),
        ],
        check=True,
    )
    started = time.perf_counter()
    process = subprocess.Popen(["bash", "-c", LOOP, "loop", str(count), str(workdir)])
    processes.adopt(process)
    cpu = wait_for_exit(process)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"ssh-keygen loop exited with {process.returncode}")
    written = len(list(keys.glob("k*-cert.pub")))
    if written != count:
        raise RuntimeError(f"ssh-keygen wrote {written} certificates, expected {count}")
    return KeygenResult(certificates=count, seconds=seconds, cpu_s=cpu)
