"""`spikerl-bench doctor [--json]`: what this machine can measure, before anything runs."""
from __future__ import annotations

import argparse
import json

from bench.energy.inventory import Inventory, inventory


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this machine can measure (GPU, CPU, RAM meters) and the verdict",
                       description="Probe NVML, amdsmi, RAPL, SLURM energy accounting, CPU bf16, a C compiler "
                                   "and CodeCarbon, and say per component whether a run here is measured or "
                                   "estimated.")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys verdict, gpu, cpu, ram, notes)")
    p.set_defaults(func=cmd_doctor)


def render(inv: Inventory) -> str:
    lines = [f"verdict: {inv.verdict}"]
    for name, comp in (("gpu", inv.gpu), ("cpu", inv.cpu), ("ram", inv.ram)):
        lines.append(f"{name}: {comp.verdict}" + (f" ({comp.source})" if comp.source else ""))
        for d in comp.devices:
            lines.append("  " + ", ".join(f"{k}={v}" for k, v in d.items() if k != "path"))
        lines += [f"  note: {n}" for n in comp.notes]
    lines += [f"note: {n}" for n in inv.notes]
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    inv = inventory()
    print(json.dumps(inv.to_json(), indent=2) if args.json else render(inv))
    return 0
