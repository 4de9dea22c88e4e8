"""``python -m helpers.server [--host 127.0.0.1] [--port 8765] [--workspace DIR] [--api-key KEY | --keys FILE]``.

Binds to loopback unless ``--host`` says otherwise; on any other address it refuses to start without a key
(``--api-key``, or ``--keys`` for a workshop). The key can also come from ``COURSE_SERVER_KEY``.
``--keys students.csv`` starts workshop mode: one ``key,name`` line per student, the row named
``instructor`` for the instructor (see :mod:`helpers.server.tenants`), with per-student limits
(``--max-active-jobs``, ``--student-upload-mb``, ``--student-storage-mb``, ``--requests-per-minute``).
While it runs, the workspace holds ``server.json`` (its URL and process id) and a lock that keeps a
second server off the same workspace.
"""
from __future__ import annotations

import argparse
import ipaddress
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


WORKSPACE_BUSY = 75  # the exit code when another server holds the workspace (EX_TEMPFAIL: try again later)


def main(argv=None) -> int:
    from helpers.environment import get_mode, outputs_dir
    from helpers.server.limits import Limits

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
    parser.add_argument("--keys", default=None, help="workshop mode: a CSV file of key,name lines, one per student "
                        "(the row named 'instructor' is the instructor's key)")
    workshop = parser.add_argument_group("per-student limits in workshop mode")
    defaults = Limits()
    workshop.add_argument("--max-active-jobs", type=int, default=defaults.max_active_jobs,
                          help=f"jobs validating, queued or running per student (default {defaults.max_active_jobs})")
    workshop.add_argument("--student-upload-mb", type=float, default=defaults.max_upload_bytes / 2**20,
                          help=f"largest file a student may upload (default {defaults.max_upload_bytes / 2**20:g} MB)")
    workshop.add_argument("--student-storage-mb", type=float, default=defaults.max_storage_bytes / 2**20,
                          help="all of a student's files together "
                          f"(default {defaults.max_storage_bytes / 2**20:g} MB)")
    workshop.add_argument("--requests-per-minute", type=int, default=defaults.requests_per_minute,
                          help=f"per student; more get a 429 (default {defaults.requests_per_minute})")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    students = None
    if args.keys:
        from helpers.server.tenants import KeyFileError, read_keys
        try:
            students = read_keys(args.keys)
        except KeyFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.api_key:
            print("warning: --api-key (or COURSE_SERVER_KEY) is ignored in workshop mode: each student uses the key "
                  "of their line in the keys file.", file=sys.stderr)
            args.api_key = None
    elif not is_loopback(args.host) and not args.api_key:
        print(f"error: refusing to serve on {args.host} without keys: anyone on the network could use this server. "
              "Pass --keys students.csv (a workshop: one key,name line per student) or --api-key KEY, or bind to "
              "127.0.0.1.", file=sys.stderr)
        return 2
    for name in ("max_active_jobs", "requests_per_minute"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1.", file=sys.stderr)
            return 2
    limits = Limits(max_active_jobs=args.max_active_jobs, max_upload_bytes=int(args.student_upload_mb * 2**20),
                    max_storage_bytes=int(args.student_storage_mb * 2**20),
                    requests_per_minute=args.requests_per_minute)

    workspace = Path(args.workspace or outputs_dir() / "server").expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    lock = open(workspace / ".server.lock", "a+")  # noqa: SIM115 - held open while the server runs
    try:
        lock_exclusively(lock)
    except OSError:
        print(f"Another course server is already using {workspace} (see {workspace / 'server.json'}). Stop it, "
              "or pass another --workspace.", file=sys.stderr)
        return WORKSPACE_BUSY

    import uvicorn

    from helpers.environment import quiet, set_threads
    from helpers.server.app import create_app
    from helpers.server.store import write_json

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
                     max_upload_bytes=int(args.max_upload_mb * 2**20), students=students, limits=limits)
    write_json(info, {"url": f"http://{args.host}:{args.port}/v1", "pid": os.getpid(), "mode": mode,
                      "key_required": bool(args.api_key or students), "workshop": students is not None})
    who = f", workshop of {len(students)} keys" if students else ""
    print(f"course server: http://{args.host}:{args.port}/v1 (workspace {workspace}, mode {mode}{who})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
