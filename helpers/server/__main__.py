"""``python -m helpers.server [--host 127.0.0.1] [--port 8765] [--workspace DIR] [--api-key KEY]``.

Binds to loopback unless ``--host`` says otherwise. The key can also come from ``COURSE_SERVER_KEY``.
While it runs, the workspace holds ``server.json`` (its URL and process id) and a lock that keeps a
second server off the same workspace.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def lock_exclusively(handle) -> None:
    """Hold an exclusive lock on an open file, or raise OSError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def main(argv=None) -> int:
    from helpers.environment import get_mode, outputs_dir

    parser = argparse.ArgumentParser(prog="python -m helpers.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workspace", default=None, help="folder for files, jobs and models "
                        "(default: outputs/server)")
    parser.add_argument("--api-key", default=os.environ.get("COURSE_SERVER_KEY") or None,
                        help="require this bearer key (default: $COURSE_SERVER_KEY, or no key)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per training example "
                        "(default by mode: ci 128, cpu 256, gpu 512)")
    parser.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload (default 100 MB)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    workspace = Path(args.workspace or outputs_dir() / "server").expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    lock = open(workspace / ".server.lock", "a+")  # noqa: SIM115 - held open while the server runs
    try:
        lock_exclusively(lock)
    except OSError:
        print(f"Another course server is already using {workspace} (see {workspace / 'server.json'}). Stop it, "
              "or pass another --workspace.", file=sys.stderr)
        return 1

    import uvicorn

    from helpers.environment import quiet, set_threads
    from helpers.server.app import create_app
    from helpers.server.store import write_json

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: serving on {args.host} without an API key lets anyone on the network use this server; "
              "pass --api-key or set COURSE_SERVER_KEY.", file=sys.stderr)
    mode = get_mode()
    quiet(silent=True)  # no progress bars in a background server; progress goes to the job events
    set_threads(mode)
    try:
        from helpers.tokens import install_offline_encodings
        install_offline_encodings()
    except Exception as exc:  # noqa: BLE001 - token counts are only used for warnings
        print(f"warning: offline token encodings unavailable ({exc})", file=sys.stderr)
    info = workspace / "server.json"
    app = create_app(workspace, api_key=args.api_key, mode=mode, max_length=args.max_length,
                     on_shutdown=lambda: info.unlink(missing_ok=True),
                     max_upload_bytes=int(args.max_upload_mb * 2**20))
    write_json(info, {"url": f"http://{args.host}:{args.port}/v1", "pid": os.getpid(), "mode": mode,
                      "key_required": bool(args.api_key)})
    print(f"course server: http://{args.host}:{args.port}/v1 (workspace {workspace}, mode {mode})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
