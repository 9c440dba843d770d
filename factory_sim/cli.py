"""`factory-sim`: one console script, one subcommand per part of the simulated factory line.

Each subcommand's flags live next to its code (`cli(argv) -> int` in the owning module), so this
dispatcher only maps names to modules and imports them lazily (the server must not pay for pandas).
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("factory_sim.server", "run the sensor-system TCP server for a simulated line"),
    "history": ("factory_sim.history", "write N days of raw objects straight into a store"),
    "roster": ("factory_sim.roster", "write the crew roster (the factory's master data) into a store"),
    "run": ("factory_sim.control", "run the control-system loop for N productions"),
    "evaluate": (
        "factory_sim.demo.evaluate",
        "compare policies (craftsmen, oracle, endpoint) on held-out lots",
    ),
    "backtest": (
        "factory_sim.demo.backtest",
        "run a line through quarters under the platform's own model loop",
    ),
    "demo": ("factory_sim.demo.run", "the end-to-end demo on embedded defaults"),
    "stack": ("factory_sim.demo.stack", "start (up) or stop (down) the services long-lived, for exploring"),
}


def _usage() -> str:
    lines = ["usage: factory-sim <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `factory-sim <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand's own `cli(argv)`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"factory-sim: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.cli(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
