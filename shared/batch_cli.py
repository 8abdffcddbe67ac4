"""`sluice batch submit|status|results|cancel|list`: batches from the command line, over Sluice's
own OpenAI-compatible Files + Batches API.

`submit input.jsonl --wait` is a drop-in for the cookbook's parallel processor: a local file in
(batch lines, or bare request bodies that it wraps, numbering them), a results file out, with a
live progress bar. It notes the batch id beside the input (`input.jsonl.sluice-batch`), so
running it again after the CLI was killed resumes that batch instead of submitting a second one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.batches.lines import OPENAI_ENDPOINTS

if TYPE_CHECKING:
    import httpx

DONE = ("completed", "failed", "expired", "cancelled")


class Api:
    def __init__(self, base_url: str, key: str) -> None:
        import httpx  # only when a batch command runs: `sluice api` and `worker` start without it

        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/v1", timeout=60,
                                 headers={"authorization": f"Bearer {key}"})

    def _ok(self, reply: httpx.Response) -> Any:
        if reply.status_code >= 400:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text
            print(f"sluice: {reply.status_code}: {message}", file=sys.stderr)
            raise SystemExit(1)
        return reply.json()

    def upload(self, name: str, content: bytes) -> Any:
        return self._ok(self.http.post("/files", data={"purpose": "batch"}, files={"file": (name, content)}))

    def create(self, file_id: str, endpoint: str) -> Any:
        return self._ok(self.http.post("/batches", json={"input_file_id": file_id, "endpoint": endpoint,
                                                          "completion_window": "24h"}))

    def get(self, batch_id: str) -> Any:
        return self._ok(self.http.get(f"/batches/{batch_id}"))

    def cancel(self, batch_id: str) -> Any:
        return self._ok(self.http.post(f"/batches/{batch_id}/cancel"))

    def list(self, limit: int) -> Any:
        return self._ok(self.http.get("/batches", params={"limit": limit}))

    def content(self, file_id: str) -> bytes:
        reply = self.http.get(f"/files/{file_id}/content")
        if reply.status_code >= 400:
            self._ok(reply)
        return reply.content


def batch_lines(raw: bytes, endpoint: str, model: str | None) -> bytes:
    """Batch lines as they are; bare request bodies wrapped, numbered from 0; `model` set on all."""
    out = []
    for n, line in enumerate(x for x in raw.splitlines() if x.strip()):
        item = json.loads(line)
        if "custom_id" not in item:
            item = {"custom_id": str(n), "method": "POST", "url": endpoint, "body": item}
        if model:
            item["body"]["model"] = model
        out.append(json.dumps(item, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


def watch(api: Api, batch_id: str) -> Any:
    """A live bar (done, failed, lines/s, ETA) until the batch has ended."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("failed {task.fields[failed]}"), TextColumn("{task.fields[rate]} lines/s"),
               TimeRemainingColumn())
    with Progress(*columns, transient=False, console=Console(stderr=True)) as bar:  # stdout: ids, results
        task = bar.add_task(batch_id, total=None, failed=0, rate="-")
        start = time.monotonic()
        while True:
            batch = api.get(batch_id)
            counts = batch["request_counts"]
            done = counts["completed"] + counts["failed"]
            began = batch.get("in_progress_at")
            # lines/s since the batch started running (by the server's clock), so a resumed CLI
            # shows the batch's rate, not its own
            ended = batch.get("finalizing_at") or batch.get("cancelled_at") or batch.get("expired_at") or time.time()
            rate = f"{done / max(1.0, ended - began):.1f}" if began and done else "-"
            bar.update(task, total=counts["total"] or None, completed=done, failed=counts["failed"], rate=rate,
                       description=f"{batch_id} {batch['status']}")
            if batch["status"] in DONE:
                return batch
            time.sleep(1.0 if time.monotonic() - start > 5 else 0.3)  # polling the batch's progress


def save_results(api: Api, batch: Any, out: Path | None) -> None:
    data = b"".join(api.content(f) for f in (batch.get("output_file_id"), batch.get("error_file_id")) if f)
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)
        print(f"{len(data.splitlines())} results -> {out}", file=sys.stderr)


def cmd_submit(args: argparse.Namespace, api: Api) -> None:
    source = Path(args.input)
    marker = source.with_name(source.name + ".sluice-batch")
    if marker.exists():
        batch_id = marker.read_text().strip()
        print(f"resuming batch {batch_id} (from {marker}; delete it to submit again)", file=sys.stderr)
    else:
        uploaded = api.upload(source.name, batch_lines(source.read_bytes(), args.endpoint, args.model))
        batch_id = api.create(uploaded["id"], args.endpoint)["id"]
        marker.write_text(batch_id + "\n")
        print(batch_id)
    if args.wait:
        batch = watch(api, batch_id)
        if batch["status"] == "failed":
            for err in (batch.get("errors") or {}).get("data", []):
                print(f"line {err.get('line')}: {err['code']}: {err['message']}", file=sys.stderr)
            raise SystemExit(1)
        save_results(api, batch, Path(args.output) if args.output else source.with_suffix(".results.jsonl"))


def cmd_status(args: argparse.Namespace, api: Api) -> None:
    batch = watch(api, args.batch_id) if args.wait else api.get(args.batch_id)
    print(json.dumps(batch, indent=2))


def cmd_results(args: argparse.Namespace, api: Api) -> None:
    batch = api.get(args.batch_id)
    if batch["status"] not in DONE:
        batch = watch(api, args.batch_id)
    save_results(api, batch, Path(args.output) if args.output else None)


def cmd_cancel(args: argparse.Namespace, api: Api) -> None:
    print(json.dumps(api.cancel(args.batch_id), indent=2))


def cmd_list(args: argparse.Namespace, api: Api) -> None:
    for b in api.list(args.limit)["data"]:
        c = b["request_counts"]
        print(f"{b['id']}  {b['status']:<11} {c['completed']}/{c['total']} done, {c['failed']} failed  "
              f"{b['endpoint']}")


def add_parser(sub: Any, key_default: Any) -> None:
    batch = sub.add_parser("batch", help="submit and follow batch jobs (OpenAI batch format)")
    batch.add_argument("--base-url", default="http://127.0.0.1:8080", help="Sluice's address")
    batch.add_argument("--key", default=None, help="client key (default: $SLUICE_API_KEY, or the config's first)")
    batch.add_argument("--config", default=None)
    verbs = batch.add_subparsers(dest="verb", required=True)
    submit = verbs.add_parser("submit", help="upload a JSONL file and start a batch")
    submit.add_argument("input")
    submit.add_argument("--endpoint", default="/v1/chat/completions", choices=OPENAI_ENDPOINTS)
    submit.add_argument("--model", default=None, help="set this model on every line")
    submit.add_argument("--wait", action="store_true", help="show progress, then write the results")
    submit.add_argument("-o", "--output", default=None, help="results file (default: <input>.results.jsonl)")
    submit.set_defaults(verb_func=cmd_submit)
    status = verbs.add_parser("status", help="a batch's state")
    status.add_argument("batch_id")
    status.add_argument("--wait", action="store_true")
    status.set_defaults(verb_func=cmd_status)
    results = verbs.add_parser("results", help="a batch's results (waits for it to end)")
    results.add_argument("batch_id")
    results.add_argument("-o", "--output", default=None)
    results.set_defaults(verb_func=cmd_results)
    cancel = verbs.add_parser("cancel", help="cancel a batch")
    cancel.add_argument("batch_id")
    cancel.set_defaults(verb_func=cmd_cancel)
    listing = verbs.add_parser("list", help="your batches, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(verb_func=cmd_list)
    batch.set_defaults(func=lambda args: args.verb_func(args, Api(args.base_url, key_default(args))))
