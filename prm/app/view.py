"""`prm view IN`: a page for people to look at traces and their labels.

Writes one self-contained HTML file (styles, script and data inline: it opens from disk,
offline, and can be mailed or attached to an issue) with filters on the left (label source,
refuted steps, disagreement between Monte Carlo, checkers, the PRM, gold and reviewers,
first-error position, score range, text search), the list of traces in pages, and the open
trace's steps coloured by label or score. `--serve` also serves it on loopback.

    prm view demo_out/labels_checked.jsonl                 # writes demo_out/labels_checked.html
    prm view ../shared/data/gsm8k/test.jsonl --limit 500 --out gsm8k.html
    prm view scored.jsonl --serve --port 8765              # http://127.0.0.1:8765/
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prm import formats
from prm.errors import RecordError
from prm.io import ReadReport, atomic_write, refuse_output_over_inputs
from prm.view_html import page_html


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN",
                        help="traces to show: native JSONL, Parquet, a `datasets` folder, or any layout of "
                             "--format (GSM8K, ProcessBench, ...)")
    parser.add_argument("--out", metavar="PAGE.html",
                        help="where to write the page (default: IN with the suffix .html, or IN.html for a folder); "
                             "it replaces only an earlier page of prm view, never the input or another file")
    parser.add_argument("--format", choices=list(formats.FORMATS), help="input layout (default: told from the fields)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N traces")
    parser.add_argument("--title", help="the page's title (default: the input's file name)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip records that cannot be read (they are listed) instead of stopping")
    parser.add_argument("--serve", action="store_true",
                        help="after writing the page, serve it on 127.0.0.1 until interrupted (Ctrl-C)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port for --serve (default: 8765; 0 picks a free one, printed)")


def default_out(path: Path) -> Path:
    return path.with_name(path.name + ".html") if path.is_dir() or not path.suffix else path.with_suffix(".html")


def is_view_page(path: Path) -> bool:
    """Whether the file at `path` is a page `prm view` wrote (an HTML page holding its data block)."""
    with open(path, "rb") as handle:
        if not handle.read(64).lstrip().upper().startswith(b"<!DOCTYPE HTML"):
            return False
        return b'<script id="prm-data"' in handle.read()


def refuse_foreign_out(out: Path, path: Path) -> None:
    """The page replaces only an earlier page of `prm view`: never the input, nor any other
    file that is already there (someone's own HTML, a JSONL given as --out by mistake)."""
    refuse_output_over_inputs(out, [path])
    if out.is_dir():
        raise RecordError("is a folder; --out is the page's file name (PAGE.html)", path=str(out))
    if out.exists() and not is_view_page(out):
        raise RecordError("exists and is not a page `prm view` wrote; it is never overwritten: "
                          "remove it or choose another --out", path=str(out))


def run(args: argparse.Namespace) -> int:
    path = Path(args.input)
    out = Path(args.out) if args.out else default_out(path)
    refuse_foreign_out(out, path)  # before any work
    report = ReadReport()
    traces = formats.read(path, args.format, skip_invalid=args.skip_invalid, report=report, limit=args.limit)
    for err in report.skipped:
        print(f"prm view: skipped {err}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = page_html(traces, title=args.title or path.name)
    with atomic_write(out) as handle:
        handle.write(page)
    print(f"wrote {out} ({len(traces)} traces, {len(page.encode()) / 1e6:.1f} MB)")
    if args.serve:
        serve(page.encode("utf-8"), args.port)
    return 0


def serve(page: bytes, port: int) -> None:
    """Serve the page at / on loopback until Ctrl-C (the CLI reports the interrupt)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            if self.path.split("?")[0].split("#")[0] not in ("/", "/index.html"):
                self.send_error(404, "only / is served")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):  # keep the terminal for the URL line
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
