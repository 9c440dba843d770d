"""`edge-collector`: run | check-config | status | inspect.

Why: one console script for the factory server; every subcommand validates its settings first and
names the setting at fault (exit 2), so a bad deployment fails at start, not an hour later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from edge_collector.config import ConfigError, as_dict, env_name, load_config
from factory_core.logs import configure_json_logging

log = logging.getLogger("edge_collector.cli")

_CONFIG_HELP = (
    "TOML config file (keys at top level or under [collector]); EDGE_<KEY> environment variables "
    "override it, e.g. EDGE_POLL_INTERVAL_S=30. See docs/edge-collector.md."
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-collector",
        description="Collect every sensor sample of one line into a durable local spool and upload it to S3.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the collector daemon until SIGTERM/SIGINT", description=(
        "Poll the sensor system, spool every batch durably, upload to the object store. SIGTERM: finish "
        "the in-flight spool write, persist cursors, exit 0."))  # fmt: skip
    run.add_argument("--config", help=_CONFIG_HELP)
    chk = sub.add_parser("check-config", help="validate the settings and print the effective config as JSON")
    chk.add_argument("--config", help=_CONFIG_HELP)
    st = sub.add_parser("status", help="backlog (files/bytes/oldest age), cursors and pending gap records")
    st.add_argument("--config", help=_CONFIG_HELP)
    st.add_argument(
        "--store",
        action="store_true",
        help="also summarise the gap ledger already in the object store: per reason the records and the "
        "samples they name, and the samples truly missing (union per channel; sensor_seq_backwards is "
        "not a loss)",
    )
    st.add_argument(
        "--verify-raw",
        action="store_true",
        help="with --store: also decode the raw objects of the days the loss records touch and do not "
        "count lost samples that are in fact stored (reads those days' objects)",
    )
    ins = sub.add_parser(
        "inspect",
        help="decode a raw object, gap object or spool file into rows",
        description="Decode a raw object (.fsr: rows channel, seq, time, value), a gap object (.fsg: one "
        "row per gap record) or a collector spool file, from a local path or s3://bucket/key.",
    )
    ins.add_argument("target", help="local file path or s3://bucket/key")
    ins.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (default csv)")
    ins.add_argument(
        "--endpoint-url", default=None, help="S3 endpoint for s3:// targets (default: AWS_ENDPOINT_URL)"
    )
    return p


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    configure_json_logging(cfg.log_level)
    from edge_collector.daemon import Collector, StartupError
    from factory_core.outbox.spool import SpoolWriteError

    try:
        collector = Collector(cfg)
        return asyncio.run(collector.run())
    except SpoolWriteError as exc:
        log.critical("spool not writable; stopping", extra={"fields": {"event": "fatal", "error": str(exc)}})
        return 1
    except StartupError as exc:
        log.critical(str(exc), extra={"fields": {"event": "fatal"}})
        return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "check-config":
            cfg = load_config(args.config)
            out = as_dict(cfg)
            out["_env"] = {k: env_name(k) for k in out}
            print(json.dumps(out, indent=2))
            return 0
        if args.command == "status":
            from edge_collector.status import collect_status, store_ledger

            cfg = load_config(args.config)
            report = collect_status(cfg)
            if args.verify_raw and not args.store:
                print("edge-collector: --verify-raw needs --store", file=sys.stderr)
                return 2
            if args.store:
                report["ledger"]["store"] = store_ledger(cfg, verify_raw=args.verify_raw)
            print(json.dumps(report, indent=2))
            return 0
        if args.command == "inspect":
            from edge_collector.describe import load_bytes, rows, write_rows

            kind, it = rows(load_bytes(args.target, args.endpoint_url))
            write_rows(kind, it, args.format)
            return 0
    except ConfigError as exc:
        print(f"edge-collector: config error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"edge-collector: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 2


def cli(argv: list[str]) -> int:
    """Contract entry point (same as main)."""
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
