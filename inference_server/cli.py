"""`inference-server`: serve the API, promote / roll back models, verify a model directory.

Each subcommand has its own argparse parser (`inference-server <cmd> --help`); settings for `serve`
come from INFERENCE_* env vars (+ INFERENCE_SETTINGS_FILE) and are validated before anything starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from factory_core.logs import configure_json_logging


def _store(url: str | None):
    from factory_core.store import open_store

    url = url or os.environ.get("INFERENCE_STORE_URL")
    if not url:
        raise ValueError("--store-url: not given and INFERENCE_STORE_URL is unset")
    return open_store(url, endpoint_url=os.environ.get("INFERENCE_STORE_ENDPOINT_URL") or None)


def cmd_serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inference-server serve",
        description="Run the recommendation API (one uvicorn worker). Settings: INFERENCE_* env vars "
        "(INFERENCE_API_KEYS and INFERENCE_ADMIN_KEYS are required); see docs/inference.md.",
    )
    parser.add_argument("--host", help="override INFERENCE_HOST")
    parser.add_argument("--port", type=int, help="override INFERENCE_PORT")
    args = parser.parse_args(argv)
    from inference_server.core.settings import SettingsError, load_settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"inference-server serve: {exc}", file=sys.stderr)
        return 2
    configure_json_logging(settings.log_level)
    import uvicorn

    from inference_server.main import create_app

    uvicorn.run(create_app(settings), **uvicorn_options(settings), host=settings.host, port=settings.port)

    return 0


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """How the server runs (the image, the tests, the benchmark): httptools + uvloop, one worker, and
    the connection limits of ``settings`` in the protocol itself (inference_server/core/limits.py)."""
    from inference_server.core.limits import guarded_protocol
    from inference_server.core.settings import connection_limits

    limits = connection_limits(settings)
    return {"http": guarded_protocol(limits), "loop": "uvloop", "workers": 1, "log_config": None,
            "access_log": False, "timeout_graceful_shutdown": 10,
            "timeout_keep_alive": limits.idle_timeout_s}  # fmt: skip


def _pointer_cmd(prog: str, description: str, version_required: bool) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        parser = argparse.ArgumentParser(prog=prog, description=description)
        parser.add_argument(
            "--version", required=version_required, help="model version, e.g. v00003-0123456789ab"
        )
        parser.add_argument("--store-url", help="object store (default: INFERENCE_STORE_URL)")
        args = parser.parse_args(argv)
        from quality_model import registry

        try:
            store = _store(args.store_url)
            if prog.endswith("promote"):
                pointer = registry.promote(store, args.version)
            else:
                pointer = registry.rollback(store, args.version)
        except (ValueError, registry.ModelVerificationError, KeyError) as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
        if pointer.get("replaced"):
            print(f"{prog}: replaced an unreadable serving pointer: {pointer['replaced']}", file=sys.stderr)
        print(json.dumps(pointer, indent=2))
        return 0

    return run


def cmd_verify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inference-server verify",
        description="Verify a model directory: SHA-256 of every file, feature schema, smoke predictions. "
        "Exit 0 and a JSON summary when servable, 1 with the reason otherwise.",
    )
    parser.add_argument("model_dir")
    args = parser.parse_args(argv)
    from quality_model import registry

    try:
        model = registry.load_dir(args.model_dir)
    except (registry.ModelVerificationError, OSError) as exc:
        print(f"inference-server verify: REFUSED {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    meta = model.metadata
    print(json.dumps({"ok": True, "version": model.version, "version_number": model.version_number,
                      "training_window": meta.get("training_window"), "lines": meta.get("lines"),
                      "metadata_sha256": model.metadata_sha256}, indent=2))  # fmt: skip
    return 0


def cmd_compile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inference-server compile",
        description="Compile the search kernels into numba's cache (NUMBA_CACHE_DIR, else next to the "
        "package or the user cache): container builds run this so a server starts without compiling.",
    )
    parser.parse_args(argv)
    import time

    from quality_model.search.recommender import compile_kernels

    started = time.perf_counter()
    compile_kernels()
    print(json.dumps({"ok": True, "seconds": round(time.perf_counter() - started, 2)}))
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "serve": (cmd_serve, "run the recommendation API"),
    "promote": (
        _pointer_cmd(
            "inference-server promote", "Verify a published version and make it the serving target.", True
        ),
        "point serving at a verified version",
    ),
    "rollback": (
        _pointer_cmd(
            "inference-server rollback",
            "Serve the previous target (or --version) after verifying it.",
            False,
        ),
        "point serving back at the previous (or a given) version",
    ),
    "verify": (cmd_verify, "verify a model directory (checksums, schema, smoke predictions)"),
    "compile": (cmd_compile, "compile the search kernels into numba's cache (image builds)"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch `inference-server <command> ...`."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: inference-server <command> [options]\n\ncommands:\n" + "\n".join(
        f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()
    )
    if not args or args[0] in {"-h", "--help", "help"}:
        print(usage)
        return 0
    if args[0] not in COMMANDS:
        print(f"inference-server: unknown command {args[0]!r}\n\n{usage}", file=sys.stderr)
        return 2
    return int(COMMANDS[args[0]][0](args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
