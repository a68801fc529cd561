"""Witnesses and publishing: does a slow or absent witness slow the hub down? A real hub (`ackhub serve`,
sweeps on, a checkpoint every `--checkpoint-interval`) publishes `--records` records from `--publishers`
threads at full speed, three times on fresh stores:

- `none`: no witness configured;
- `live`: two witnesses (`ackhub witness serve`, processes of their own) cosigning every checkpoint;
- `down`: the same two, one of them replaced by a socket that accepts connections and never answers.

The modes run interleaved `--repeat` times (none, live, down, none, live, down …) and the median of each
figure is printed, since on a shared machine one run's noise is larger than the effect looked for:
records/s, publish latency (p50, p99, max) and the hub's CPU per record, and, for the witnessed runs, the
tree size each witness cosigned at the end against the hub's newest checkpoint.

    .venv/bin/python -m bench.witness                       # 3000 records on a fresh SQLite file each
    .venv/bin/python -m bench.witness --records 500 --modes none,down
"""

# The repository goes on the path before `hub` is imported (run as a script, only bench/ is on it).

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ackhub.audit.acks import public_key_base64
from ackhub.audit.checkpoint import log_verifier
from ackhub.client.agency import AgencyClient
from bench.exchange import HubProcess, process_cpu_seconds
from tests.witness_kit import WitnessProcess

REPO = Path(__file__).resolve().parents[1]

ORIGIN = "bench.example/ackhub"
RECORD_TYPE = "customs.export_declaration.released"
AGENCIES = ("customs", "tax", "fx")


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


def hub_config(
    work: Path, database_url: str, hub_key: Path, witnesses: list[tuple[str, str, str]], every: str
) -> Path:
    keys = {a: Ed25519PrivateKey.from_private_bytes(a.encode().ljust(32, b"\0")) for a in AGENCIES}
    lines = [
        "[server]",
        'listen = "127.0.0.1:0"',
        f"database_url = {_toml(database_url)}",
        'log_level = "info"',
        "",
        "[limits]",
        "requests_per_second = 0.0",
        "",
        "[audit]",
        f"origin = {_toml(ORIGIN)}",
        f"signing_key_file = {_toml(str(hub_key))}",
        f"checkpoint_interval = {_toml(every)}",
        "",
    ]
    for name, url, key in witnesses:
        lines += [
            "[[audit.witnesses]]",
            f"name = {_toml(name)}",
            f"url = {_toml(url)}",
            f"key = {_toml(key)}",
            'timeout = "5s"',
            "",
        ]
    for agency, agency_key in keys.items():
        lines += [
            "[[agencies]]",
            f"id = {_toml(agency)}",
            f"name = {_toml(agency.upper())}",
            f"kind = {_toml(agency)}",
            "[[agencies.keys]]",
            f"id = {_toml(agency + '-bench-1')}",
            f"public_key = {_toml(public_key_base64(agency_key.public_key()))}",
            "",
        ]
    lines += ["[[routes]]", f"record_type = {_toml(RECORD_TYPE)}", 'publishers = ["customs"]', ""]
    for agency in ("tax", "fx"):
        lines += ["[[routes.recipients]]", f"agency = {_toml(agency)}", 'deadline = "10m"', ""]
    config = work / "hub.toml"
    config.write_text("\n".join(lines))
    return config


def publish(target: str, records: int, publishers: int) -> list[float]:
    """Each publisher thread waits for its receipt before the next record; returns every latency (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    share = [records // publishers + (1 if i < records % publishers else 0) for i in range(publishers)]

    def run(count: int) -> None:
        client = AgencyClient(target, "customs")
        mine = []
        for _ in range(count):
            began = time.perf_counter()
            client.publish(RECORD_TYPE, b'{"fob": 1}', request_id=str(uuid.uuid4()))
            mine.append((time.perf_counter() - began) * 1000)
        client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def cosigned_sizes(database_url: str) -> tuple[int, dict[str, int]]:
    """(the newest checkpoint's size, each witness's cosigned size) from a SQLite store."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        newest = db.execute("SELECT max(tree_size) FROM audit_checkpoints").fetchone()[0] or 0
        sizes = dict(db.execute("SELECT witness, max(tree_size) FROM audit_cosignatures GROUP BY witness"))
    return newest, sizes


def run(mode: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir()
    key = Ed25519PrivateKey.generate()
    hub_key = work / "hub-key"
    hub_key.write_text(key.private_bytes_raw().hex())
    log_key = log_verifier(ORIGIN, key.public_key())
    processes: list[WitnessProcess] = []
    silent: socket.socket | None = None
    witnesses: list[tuple[str, str, str]] = []
    if mode != "none":
        for index, name in enumerate(("tax.example/witness", "fx.example/witness")):
            process = WitnessProcess(work / f"w{index}", name, [log_key])
            if mode == "down" and index == 1:
                silent = socket.socket()
                silent.bind(("127.0.0.1", 0))
                silent.listen(64)  # accepts in the kernel; nothing ever reads or answers
                witnesses.append((name, f"http://127.0.0.1:{silent.getsockname()[1]}", process.vkey))
            else:
                processes.append(process.start())
                witnesses.append((name, process.url, process.vkey))
    database_url = f"sqlite:///{work / 'hub.db'}"
    hub = HubProcess(
        hub_config(work, database_url, hub_key, witnesses, args.checkpoint_interval), work / "hub.log"
    )
    hub.start(60)
    target = hub.target
    try:
        publish(target, min(200, args.records), args.publishers)  # warm-up
        cpu, began = process_cpu_seconds(hub.pid), time.perf_counter()
        latencies = publish(target, args.records, args.publishers)
        elapsed, cpu = time.perf_counter() - began, process_cpu_seconds(hub.pid) - cpu
        time.sleep(
            2 * float(args.checkpoint_interval.removesuffix("s")) + 1
        )  # let the last checkpoint go out
    finally:
        hub.stop(30)
        for process in processes:
            process.stop()
        if silent is not None:
            silent.close()
    latencies.sort()
    result: dict[str, Any] = {
        "mode": mode,
        "records_per_s": args.records / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "max_ms": latencies[-1],
        "hub_cpu_ms_per_record": cpu * 1000 / args.records,
    }
    if mode != "none":
        result["newest_checkpoint"], result["cosigned"] = cosigned_sizes(database_url)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--checkpoint-interval", default="1s", help="seconds, e.g. 1s")
    parser.add_argument("--modes", default="none,live,down")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all modes, interleaved")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes.split(",")}
    with tempfile.TemporaryDirectory(prefix="ackhub-witness-bench-") as tmp:
        for round_ in range(args.repeat):
            for mode in runs:
                print(f"round {round_ + 1}: {mode} …", file=sys.stderr, flush=True)
                runs[mode].append(run(mode, args, Path(tmp) / f"{mode}-{round_}"))
    results = [
        {
            **done[-1],
            **{k: statistics.median(r[k] for r in done) for k in done[0] if isinstance(done[0][k], float)},
            "each": [round(r["records_per_s"]) for r in done],
        }
        for done in runs.values()
    ]
    print(
        f"{args.records} records, {args.publishers} publishers, a checkpoint every {args.checkpoint_interval}"
    )
    header = ("witnesses", "records/s", "p50 ms", "p99 ms", "max ms", "hub CPU ms/rec")
    widths = (-10, 10, 8, 8, 8, 15)
    print(
        " ".join(f"{h:<{-w}}" if w < 0 else f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
        + "  records/s of each run; cosigned (last run)"
    )
    for r in results:
        cosigned = ""
        if "cosigned" in r:
            cosigned = f"newest {r['newest_checkpoint']}: " + ", ".join(
                f"{k} {v}" for k, v in sorted(r["cosigned"].items())
            )
        print(
            f"{r['mode']:<10} {r['records_per_s']:>10.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.1f} "
            f"{r['hub_cpu_ms_per_record']:>15.2f}  {r['each']}; {cosigned}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
