"""`foldaccel bench ...`: accelerator benchmarks from the command line (also in `make bench`)."""

from __future__ import annotations

import argparse

from sim.cli.common import add_json_arg, emit, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="accelerator benchmarks (simulation speed, GEMM cycles)",
                       description="Benchmarks that measure ratios within one run on this "
                       "machine; `make bench` runs all registered benchmarks.")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    bsub.required = True
    s = bsub.add_parser("sim-speed", help="runner cycles/s vs a plain Verilator C++ harness",
                        description="Simulated cycles per second of a long GEMM through the "
                        "project's runner (cocotb, clock inside the model) divided by a plain "
                        "Verilator C++ harness driving the same Verilog with the same program "
                        "and data (generated and compiled here). Target ratio >= 0.5.")
    s.add_argument("--m", type=int, default=256)
    s.add_argument("--k", type=int, default=512)
    s.add_argument("--n", type=int, default=256)
    add_json_arg(s)
    s.set_defaults(func=sim_speed_cmd)
    g = bsub.add_parser("gemm-cycles", help="RTL cycles of four GEMMs vs the MAC bound",
                        description="Total cycles (host transfers included) of the GEMMs "
                        "16x64x64, 32x128x128, 64x256x64, 128x128x128 on the 16x16 array, "
                        "divided by M*K*N/256.")
    add_json_arg(g)
    g.set_defaults(func=gemm_cycles_cmd)


def sim_speed_cmd(args: argparse.Namespace) -> int:
    from sim.bench.gemm import sim_speed

    r = sim_speed(args.m, args.k, args.n)
    if args.json:
        emit(r)
    else:
        print(format_table(["quantity", "value"], [[k, v] for k, v in r.items()]))
    return 0 if r["same_result"] else 1


def gemm_cycles_cmd(args: argparse.Namespace) -> int:
    from sim.bench.gemm import gemm_cycles

    title, header, rows = gemm_cycles()
    if args.json:
        emit({"title": title, "rows": [dict(zip(header, r, strict=True)) for r in rows]})
    else:
        print(title)
        print(format_table(header, rows))
    return 0
