"""Serves the run reports over HTTP, so the report link in the Prefect UI opens in one click (a
browser refuses file:// links from a web page).

    python -m shell.report_server --port 4201 [--root runs]

Only `<run id>/report/<file>` is served: checkpoints and datasets stay off the wire. Bound to
127.0.0.1, like the Prefect server. `make serve` starts it beside the server (shell/prefect_server.py).
"""

from __future__ import annotations

import argparse
import functools
import re
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from core.runstore import RunStore
from flows.report import REPORT_PORT

REPORT_PATH = re.compile(r"^/[A-Za-z0-9._-]+/report/[A-Za-z0-9._-]+$")


class ReportHandler(SimpleHTTPRequestHandler):
    def send_head(self) -> Any:  # GET and HEAD both come through here
        if not REPORT_PATH.match(urlsplit(self.path).path):
            self.send_error(404, "only <run id>/report/<file> is served")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:  # one line per request is noise here
        pass


def serve(root: str, port: int) -> None:
    handler = functools.partial(ReportHandler, directory=root)
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        httpd.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shell.report_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=REPORT_PORT)
    parser.add_argument("--root", default=None, help="run store (default: R1_RUNS_DIR or runs/)")
    args = parser.parse_args(argv)
    serve(args.root or str(RunStore().root), args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
