"""Entry point, `python -m benchmarks` from the repository root: the options, which sections run in which order, the
report. The child processes of sections 5 to 9 and 11 come back here with `--worker NAME`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import benchmarks
from benchmarks import (
    section_attention,
    section_blas_rule,
    section_bound,
    section_busy,
    section_conv,
    section_end_to_end,
    section_graph,
    section_lstm,
    section_scaling,
    section_threads,
    section_vs_keras,
)
from benchmarks.machine import closing_lines, gemm_probe, machine_lines
from benchmarks.report import Section, print_report, render_machine
from benchmarks.timing import FULL, GUARD, QUICK, Budget

SECTIONS = tuple(str(k) for k in range(1, 12))


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, set[str], Budget]:
    """The options, the chosen section numbers, and the timing budget they ask for."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=benchmarks.__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and settings: about two minutes")
    parser.add_argument(
        "--all-settings",
        action="store_true",
        help="section 5: also the thread settings that did not help (env-var twins, OMP_NUM_THREADS)",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS), help="which sections to run, e.g. 2,4 (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--patience",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait in all for an idle machine to repeat disturbed measurements "
        f"(default {FULL.patience:g}, --quick {QUICK.patience:g})",
    )
    args = parser.parse_args(argv)
    chosen = {part.strip() for part in args.sections.split(",")}
    if not chosen <= set(SECTIONS):
        parser.error(f"--sections: expected numbers 1-{len(SECTIONS)} separated by commas, got {args.sections!r}")
    budget = QUICK if args.quick else FULL
    if args.patience is not None:
        budget = replace(budget, patience=args.patience, retries=max(budget.retries, 3 if args.patience else 0))
    return args, chosen, budget


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections and print the report; with --worker, one child's JSON line (sections 5 to 9)."""
    args, chosen, budget = parse_args(argv)
    GUARD.patience = budget.patience
    if args.worker:
        if args.worker.startswith(section_conv.WORKER_PREFIX):
            worker = section_conv.worker
        elif args.worker.startswith(section_lstm.WORKER_PREFIX):
            worker = section_lstm.worker
        elif args.worker.startswith(section_graph.WORKER_PREFIX):
            worker = section_graph.worker
        elif args.worker.startswith(section_attention.WORKER_PREFIX):
            worker = section_attention.worker
        elif args.worker.startswith(section_busy.WORKER_PREFIX):
            worker = section_busy.worker
        else:
            worker = section_threads.worker
        print(json.dumps(worker(args.worker, budget)), flush=True)
        return 0

    started = time.perf_counter()
    machine = [*machine_lines(), ("GEMM 1024 at start", gemm_probe())]
    print(render_machine(machine, "simple"), flush=True)
    rounds = 2 if args.quick else 3
    done: dict[str, Section] = {}
    step_ms: dict[tuple[str, int], float] = {}
    # Everything that must not see TensorFlow runs first; this process imports it in section 1 (or 5).
    if "10" in chosen:
        done["10"] = section_blas_rule.run(budget, args.quick)
    if "2" in chosen:
        done["2"], step_ms = section_bound.run(budget, rounds)
    if "4" in chosen:
        done["4"] = section_scaling.run(budget, rounds)
    if "6" in chosen:  # its Keras side runs in child processes
        done["6"] = section_conv.run(budget, rounds, args.quick)
    if "7" in chosen:  # its Keras side runs in child processes too
        done["7"] = section_lstm.run(budget, rounds, args.quick)
    if "8" in chosen:  # its Keras side runs in child processes too
        done["8"] = section_graph.run(budget, rounds, args.quick)
    if "9" in chosen:  # its Keras side runs in child processes too
        done["9"] = section_attention.run(budget, rounds, args.quick)
    if "11" in chosen:  # its steps run in one child process
        done["11"] = section_busy.run(budget, args.quick)
    if "5" in chosen and ("float32", 128) not in step_ms:
        step_ms["float32", 128] = section_threads.scratch_ms_before_tf(budget)
    if "3" in chosen:
        done["3"] = section_end_to_end.run(budget, 1 if args.quick else 3, args.quick)
    if "1" in chosen:
        done["1"] = section_vs_keras.run(budget, rounds)
    if "5" in chosen:
        level = "quick" if args.quick else "all" if args.all_settings else "full"
        done["5"] = section_threads.run(budget, level, 1 if args.quick else 2, step_ms["float32", 128])
    print_report(machine, closing_lines(started, args.quick), [done[number] for number in sorted(done, key=int)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
