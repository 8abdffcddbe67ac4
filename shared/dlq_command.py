"""`sluice dlq list|show|replay|purge`: the dead-letter queue, per account (shared/redis/dlq.py)."""

from __future__ import annotations

import time

import msgspec

from shared.config import Config
from shared.redis.client import Role, connect
from shared.redis.dlq import DeadLetter, DeadLetters
from shared.redis.keys import Keys


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def render_list(letters: list[DeadLetter]) -> str:
    if not letters:
        return "no dead letters"
    lines = [f"{'job':<26} {'account':<16} {'died (UTC)':<19} {'status':>6} {'tries':>5}  reason"]
    for d in letters:
        lines.append(f"{d.job_id:<26} {d.account:<16} {_when(d.dead_ms):<19} {d.status or '-':>6} "
                     f"{d.attempts:>5}  {d.reason}")
    return "\n".join(lines)


async def run(config: Config, action: str, ids: list[str], account: str | None, every: bool,
              as_json: bool) -> tuple[int, str]:
    """(exit code, output) of one `sluice dlq` action."""
    client = connect(config.redis_url, Role.TOOL)
    try:
        dlq = DeadLetters(client, Keys(config.key_prefix))
        accounts = [account] if account else [a.name for a in config.accounts]
        letters = [d for name in accounts for d in await dlq.list(name)]
        if action == "list":
            return 0, msgspec.json.encode(letters).decode() if as_json else render_list(letters)
        where = {d.job_id: d.account for d in letters}
        targets = list(where) if every else ids
        missing = [i for i in targets if i not in where]
        if missing:
            return 1, f"not in the dead-letter queue: {', '.join(missing)}"
        if action == "show":
            shown = [await dlq.show(where[i], i) for i in targets]
            return 0, "\n".join(msgspec.json.format(msgspec.json.encode(s)).decode() for s in shown)
        done = 0
        for job_id in targets:
            if action == "replay":
                now = int(time.time() * 1000)
                done += await dlq.replay(where[job_id], job_id, int(config.queue.max_wait_seconds * 1000), now)
            else:
                done += await dlq.purge(where[job_id], job_id)
        verb = "re-queued" if action == "replay" else "purged"
        return 0, f"{done} {verb}"
    finally:
        await client.aclose()
