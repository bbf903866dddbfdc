"""The benchmark's tables, as Markdown: printed to the terminal and written to BENCHMARKS.md.

Pure formatting: figures in, text out. Rates are successful answers per second of wrk's own
measured duration (Even: 201 grants; OpenBao: 200 signed keys); latencies are wrk's
percentiles over all answers of the run; CPU is seconds of CPU per wall second ("cores"),
wrk's from wait4(), the servers' from /proc, the rest is the machine's busy time less both
(kernel networking, and any other process running at the time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.baseline import KeygenResult
from bench.cli_timing import Timing, ssh_overhead_ms
from bench.even_target import AuditCheck
from bench.load import WrkResult

Results = Mapping[str, Mapping[int, WrkResult]]


@dataclass(frozen=True)
class Report:
    date: str
    command: str
    settings: Mapping[str, str]
    machine: Mapping[str, str]
    load_before: str
    load_after: str
    results: Results
    even_labels: Sequence[str]
    # OpenBao's targets, the comparison first (the sign-only token without `default`).
    openbao_labels: Sequence[str]
    keygen: KeygenResult | None
    audits: Mapping[str, AuditCheck]
    timings: Sequence[Timing]
    skipped: Sequence[str]
    profile: str | None = None


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.1f} ms"


def _rate(result: WrkResult | None) -> str:
    return f"{result.ok_per_second:,.0f}" if result else "–"


def comparison(report: Report, even_label: str) -> list[str]:
    bao = report.results.get(report.openbao_labels[0], {}) if report.openbao_labels else {}
    lines = [
        f"| concurrency | {even_label} grants/s | p50 | p99 | OpenBao (sign-only token) "
        "certs/s | p50 | p99 | Even/OpenBao |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for connections, even in report.results[even_label].items():
        other = bao.get(connections)
        ratio = (
            f"{even.ok_per_second / other.ok_per_second:.2f}×"
            if other and other.ok_per_second
            else "–"
        )
        lines.append(
            f"| {connections} | {_rate(even)} | {_ms(even.latency_us['p50'])} | "
            f"{_ms(even.latency_us['p99'])} | {_rate(other)} | "
            f"{_ms(other.latency_us['p50']) if other else '–'} | "
            f"{_ms(other.latency_us['p99']) if other else '–'} | {ratio} |"
        )
    return lines


def token_kinds(report: Report) -> list[str]:
    """OpenBao at each concurrency with each token kind, side by side."""
    labels = report.openbao_labels
    if len(labels) < 2:
        return []
    levels = sorted({c for label in labels for c in report.results.get(label, {})})
    head = " | ".join(f"{label.removeprefix('OpenBao, ')} certs/s | p99" for label in labels)
    lines = [
        "OpenBao by client token (the comparison above uses the first column):",
        "",
        f"| concurrency | {head} |",
        "|---:|" + "---:|---:|" * len(labels),
    ]
    for connections in levels:
        cells = []
        for label in labels:
            run = report.results.get(label, {}).get(connections)
            cells.append(f"{_rate(run)} | {_ms(run.latency_us['p99']) if run else '–'}")
        lines.append(f"| {connections} | {' | '.join(cells)} |")
    return [
        *lines,
        "",
        "sign-only token: `bao token create -policy=bench-sign -no-default-policy`, how an "
        "operator would set up a signing client; + default policy: the same without "
        "`-no-default-policy` (what `bao token create -policy=X` gives), which costs OpenBao "
        "a second policy's evaluation per request; root token: no ACL check at all, the "
        "figure OpenBao-only benchmarks tend to quote.",
        "",
    ]


def _per_cpu(run: WrkResult) -> str:
    return f"{run.ok2xx / run.cpu.server:,.0f}" if run.cpu.server > 0 else "–"


def details(report: Report) -> list[str]:
    lines = [
        "| target | c | answers | 2xx | non-2xx | socket errors | p90 | max | wrk CPU "
        "| server CPU | rest of machine | 2xx per server CPU-second |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in report.results.items():
        for connections, run in runs.items():
            wall = run.cpu.wall
            lines.append(
                f"| {label} | {connections} | {run.requests:,} | {run.ok2xx:,} | {run.non2xx:,} "
                f"| {sum(run.socket_errors.values()):,} | {_ms(run.latency_us['p90'])} "
                f"| {_ms(run.latency_us['max'])} | {run.wrk_cpu_s / wall:.2f} cores "
                f"| {run.cpu.server / wall:.2f} cores | {_rest_cores(run):.2f} cores "
                f"| {_per_cpu(run)} |"
            )
    return lines


BUSY_CORES = 0.5


def _rest_cores(run: WrkResult) -> float:
    return max(0.0, run.cpu.machine - run.cpu.server - run.wrk_cpu_s) / run.cpu.wall


def disturbance(report: Report) -> list[str]:
    """A warning when other work shared the machine during the measured runs."""
    runs = [run for results in report.results.values() for run in results.values()]
    if not runs:
        return []
    mean = sum(_rest_cores(run) for run in runs) / len(runs)
    if mean < BUSY_CORES:
        return []
    return [
        f"> **The machine was shared while measuring**: besides the server and wrk, "
        f"{mean:.2f} cores on average were busy during the runs (other processes, plus "
        "loopback networking). Rates and latencies are therefore pessimistic for every "
        "target; the per-CPU-second column under 'Every run' is the steadier figure.",
        "",
    ]


def render(report: Report) -> str:
    out = [
        "# Benchmarks",
        "",
        f"Measured {report.date} with `{report.command}` (bench/run.py; see bench/README.md).",
        "Every request signs a fresh Ed25519 public key for principal `alice`, 30-minute "
        "lifetime; load from `wrk` with bench/wrk/sign.lua.",
        "",
        *disturbance(report),
        "## Grants per second",
        "",
    ]
    for label in report.even_labels:
        out += [*comparison(report, label), ""]
    out += token_kinds(report)
    if report.keygen:
        k = report.keygen
        out += [
            f"Do-it-yourself baseline: a bash loop of `ssh-keygen -s` signed {k.certificates:,} "
            f"certificates in {k.seconds:.2f} s = **{k.per_second:,.0f} certificates/s** "
            "(one after another; no policy, no audit, no network).",
            "",
        ]
    out += ["## Audit check after the load", ""]
    for label, check in report.audits.items():
        mark = "OK" if check.ok else "FAILED"
        out.append(f"- {label}: **{mark}** — {check.summary()}.")
    out += [
        "",
        "## piu",
        "",
        "| what | median | min | max | runs | tool |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for timing in report.timings:
        out.append(
            f"| `{timing.label}` | {timing.median_s * 1000:.0f} ms | {timing.min_s * 1000:.0f} ms "
            f"| {timing.max_s * 1000:.0f} ms | {timing.runs} | {timing.tool} |"
        )
    overhead = ssh_overhead_ms(list(report.timings))
    if overhead is not None:
        out += ["", f"**`piu ssh` overhead over ssh: {overhead:.0f} ms** (median difference)."]
    out += [
        "",
        "`piu request-access` is timed from process start to the certificate written and the "
        "process exited, against the same Even over loopback (HOME in a temporary directory, "
        "no ssh-agent, bytecode cache warm as for an installed package). `piu ssh` runs with "
        "that certificate held and execs an `ssh` that is /bin/true (first on PATH), so it "
        "times piu's own work: finding the grant, checking its certificate, building the "
        "command; the stand-in alone is timed too, and the overhead is the difference.",
        "",
        "## Every run",
        "",
        *details(report),
        "",
        "CPU columns are CPU seconds per wall second during the measured run (2.00 = both "
        "cores of a 2-core machine). 'rest of machine' is kernel work not charged to a process "
        "(loopback networking) plus any other process that ran meanwhile. The last column "
        "(successful answers per CPU-second the server used; for Even on PostgreSQL the "
        "cluster's CPU is included) is the figure least disturbed by a busy machine.",
        "",
    ]
    if report.profile:
        out += ["## Where Even spends its time (py-spy)", "", report.profile, ""]
    out += ["## Settings", ""]
    out += [f"- {name}: {value}" for name, value in report.settings.items()]
    out += [f"- skipped: {reason}" for reason in report.skipped]
    out += ["", "## Machine", ""]
    out += [f"- {name}: {value}" for name, value in report.machine.items()]
    out += [f"- load average before / after: {report.load_before} / {report.load_after}", ""]
    return "\n".join(out)
