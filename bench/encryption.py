"""Encryption benchmark: what the encrypting payload codec costs, against plain payloads, in the
same process and run.

    python bench/encryption.py [--users 60] [--rounds 3] [--concurrency 12] [--json]

Two parts, each alternating plain and encrypted (plain first, then encrypted first, ...):

1. **The codec alone**: encode then decode of payloads of 200 B, 4 KiB and 64 KiB through the
   data converter (:func:`onboarding.service.temporal.data_converter`), with and without the
   codec: microseconds per payload, and the ratio.
2. **Journeys**: one Temporal dev server (SQLite, as ``onboarding dev``) and the Smile stand-in
   for the run; per mode and round a fresh client and worker in this process on a task queue of
   their own, the client with or without the codec (the worker inherits it, as in production).
   N users at concurrency C each start (the API's start: Smile user, update-with-start),
   refresh their link token, receive five webhooks (account created and connected, identity,
   employments, incomes), are read (query) and cancelled. Reported: journeys/s, this process's
   CPU per journey (client and worker: all the codec's work), and the ratios
   encrypted/plain per round and their median. Figures are printed, never asserted (``--json``
   adds one JSON line at the end). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from pydantic import SecretStr
from temporalio.client import Client

from activities.smile_client import SmileClient
from onboarding.core.encryption_keys import new_key
from onboarding.core.models import Event, Source, StartRequest
from onboarding.service.codec import EncryptionCodec, codec_from_keys
from onboarding.service.onboardings import Onboardings
from onboarding.service.settings import Settings
from onboarding.service.temporal import connect, data_converter
from onboarding.service.worker import build_worker
from onboarding.tooling.devserver import TemporalDevServer
from onboarding.tooling.ports import free_port
from onboarding.tooling.serving import serving
from onboarding.tooling.smile_standin import create_standin_app

SMILE_KEY, SMILE_SECRET = "bench-key", "bench-secret"
WEBHOOKS = ("ACCOUNT_CREATED", "ACCOUNT_CONNECTED", "IDENTITY_ADDED", "EMPLOYMENTS_ADDED",
            "INCOMES_ADDED")  # fmt: skip
SIZES = (200, 4096, 65536)
MODES = ("plain", "encrypted")


def cpu() -> float:
    return time.process_time()


# --- 1. the codec alone --------------------------------------------------------------------


async def codec_micro(codec: EncryptionCodec | None, size: int, count: int) -> float:
    """Microseconds per payload for encode+decode of a JSON value of about ``size`` bytes."""
    converter = data_converter(codec)
    value = {"externalMetadata": {"note": "x" * size}}
    started = time.perf_counter()
    for _ in range(count):
        payloads = await converter.encode([value])
        await converter.decode(payloads, [dict])
    return (time.perf_counter() - started) / count * 1e6


# --- 2. journeys ---------------------------------------------------------------------------


def webhook(user: str, event_type: str, at: int) -> Event:
    now = datetime.now(UTC)
    return Event(id=f"et-{uuid.uuid4().hex}", type=event_type, source=Source.WEBHOOK,
                 created_at=now, received_at=now,
                 data={"userId": user, "accountId": "a-1", "providers": ["abccorp"],
                       "seq": at})  # fmt: skip


async def journey(ops: Onboardings, index: int) -> None:
    issued, _ = await ops.start(
        StartRequest(external_metadata={"applicant": f"bench-{index}", "email": "a@b.example"})
    )
    user = issued.user_id
    await ops.link_token(user)
    for at, event_type in enumerate(WEBHOOKS):
        await ops.ingest(user, [webhook(user, event_type, at)])
    await ops.get(user)
    await ops.cancel(user, "bench")


async def run_journeys(
    address: str, smile_url: str, codec: EncryptionCodec | None, users: int, concurrency: int
) -> dict[str, float]:
    client: Client = await connect(address, use_environment=False, codec=codec)
    settings = Settings(
        task_queue=f"bench-enc-{uuid.uuid4().hex[:8]}",
        callback_secret=SecretStr("bench-callback"),
        defaults_id=f"bench-defaults-{uuid.uuid4().hex[:8]}",
    )
    ops = Onboardings(client, settings)
    smile = SmileClient(smile_url, SMILE_KEY, SecretStr(SMILE_SECRET))
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            await journey(ops, index)

    async with build_worker(client, settings.task_queue, smile):
        await journey(ops, -1)  # warm: the sandbox's imports, the connection
        cpu_before, started = cpu(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(users)))
        elapsed, spent = time.perf_counter() - started, cpu() - cpu_before
    await smile.aclose()
    return {"journeys_per_s": users / elapsed, "cpu_ms_per_journey": spent / users * 1000}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    codec = codec_from_keys([new_key("bench")])
    codecs = {"plain": None, "encrypted": codec}
    report: dict[str, Any] = {"codec": {}, "journeys": []}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; load {os.getloadavg()}")
    print("\n1. the data converter: encode+decode of one value, microseconds per payload")
    for size in SIZES:
        figures: dict[str, list[float]] = {m: [] for m in MODES}
        for round_ in range(args.rounds):
            order = MODES if round_ % 2 == 0 else MODES[::-1]
            for mode in order:
                figures[mode].append(
                    await codec_micro(codecs[mode], size, 2000 if size < 65536 else 300)
                )
        plain, enc = median(figures["plain"]), median(figures["encrypted"])
        report["codec"][size] = {"plain_us": plain, "encrypted_us": enc, "ratio": enc / plain}
        print(f"   {size:>6} B   plain {plain:8.1f} us   encrypted {enc:8.1f} us   "
              f"ratio {enc / plain:5.2f}   (+{enc - plain:.1f} us)")  # fmt: skip

    workdir = Path(tempfile.mkdtemp(prefix="onboarding-bench-encryption-"))
    server = TemporalDevServer(workdir, port=free_port(), ui_port=free_port())
    await server.start()
    smile_port = free_port()
    print(f"\n2. journeys: {args.users} users at concurrency {args.concurrency}, "
          f"{args.rounds} rounds (Temporal dev server, SQLite, in {workdir})")  # fmt: skip
    try:
        async with serving(create_standin_app(SMILE_KEY, SMILE_SECRET), "127.0.0.1", smile_port):
            smile_url = f"http://127.0.0.1:{smile_port}/v1"
            for round_ in range(args.rounds):
                order = MODES if round_ % 2 == 0 else MODES[::-1]
                results: dict[str, dict[str, float]] = {}
                for mode in order:
                    results[mode] = await run_journeys(
                        server.address, smile_url, codecs[mode], args.users, args.concurrency
                    )
                    r = results[mode]
                    print(f"   round {round_ + 1} {mode:<9}  {r['journeys_per_s']:6.1f} "
                          f"journeys/s   {r['cpu_ms_per_journey']:6.1f} ms CPU/journey "
                          "(client+worker)")  # fmt: skip
                report["journeys"].append(results)
    finally:
        await server.stop()
    rate = [r["encrypted"]["journeys_per_s"] / r["plain"]["journeys_per_s"]
            for r in report["journeys"]]  # fmt: skip
    cost = [r["encrypted"]["cpu_ms_per_journey"] / r["plain"]["cpu_ms_per_journey"]
            for r in report["journeys"]]  # fmt: skip
    report["ratios"] = {"journeys_per_s": median(rate), "cpu_per_journey": median(cost)}
    print(f"\n   encrypted/plain per round: journeys/s {', '.join(f'{x:.2f}' for x in rate)}; "
          f"CPU/journey {', '.join(f'{x:.2f}' for x in cost)}")  # fmt: skip
    print(f"   median: journeys/s x{median(rate):.2f}, CPU per journey x{median(cost):.2f}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps(result, default=str))
