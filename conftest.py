"""How `make test` shares its two workers (`pytest -n 2 --dist loadfile`).

Each file's tests run together on one worker. The notebooks that start the course server share one server
workspace (``outputs/server``), so they form a single unit of work: they run one after another on the same
worker, since two kernels starting or stopping that one server at the same time would race.
"""
from pathlib import Path

import pytest

SERVER_CALLS = ("api.client(", "api.ensure_server(")
SERVER_UNIT = "notebooks that start the course server"


def starts_the_server(path: Path) -> bool:
    """Whether a notebook starts (or reuses) the course server in the default workspace."""
    return path.suffix == ".ipynb" and path.is_file() and any(
        call in path.read_text(encoding="utf-8") for call in SERVER_CALLS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ServerNotebooksTogether(LoadFileScheduling):
        known: dict = {}

        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope not in self.known:
                self.known[scope] = starts_the_server(config.rootpath / scope)
            return SERVER_UNIT if self.known[scope] else scope

    return ServerNotebooksTogether(config, log)
