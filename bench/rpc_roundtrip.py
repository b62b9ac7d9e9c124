"""RPC round trip and cast throughput against a private RabbitMQ broker.

    python bench/rpc_roundtrip.py [--calls 2000] [--casts 2000] [--server thread|process]

Starts its own broker (tests/fixtures/rabbitmq.py, the same one the tests use), an RPC server
(in a thread of this process, or in a separate process so client and server do not share the
GIL), then prints call round-trip percentiles and cast throughput. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control.common import rpc  # noqa: E402
from control.common.context import RequestContext  # noqa: E402
from tests.fixtures.rabbitmq import RabbitMQBroker  # noqa: E402

TOPIC = "bench"
TARGET_P50_MS = 2.0


class BenchEndpoint:
    def __init__(self) -> None:
        self.casts = 0
        self.lock = threading.Lock()

    def ping(self, ctxt: RequestContext, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    def bump(self, ctxt: RequestContext, n: int) -> None:
        with self.lock:
            self.casts += 1

    def cast_count(self, ctxt: RequestContext) -> int:
        return self.casts


def serve_forever(url: str, ready: Any, stop: Any) -> None:
    """The server side in a separate process (spawned)."""
    transport = rpc.Transport(url)
    server = rpc.RPCServer(transport, TOPIC, [BenchEndpoint()])
    server.start()
    ready.set()
    stop.wait()
    server.stop()
    server.wait()


def percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--casts", type=int, default=2000)
    parser.add_argument("--server", choices=["thread", "process"], default="thread")
    args = parser.parse_args()

    with RabbitMQBroker() as broker:
        print(f"broker: RabbitMQ at 127.0.0.1:{broker.port} (private, {broker.nodename})")
        transport = rpc.Transport(broker.url)
        server: rpc.RPCServer | None = None
        proc = None
        stop_event: Any = None
        if args.server == "thread":
            server = rpc.RPCServer(transport, TOPIC, [BenchEndpoint()])
            server.start()
        else:
            mp = multiprocessing.get_context("spawn")
            ready, stop_event = mp.Event(), mp.Event()
            proc = mp.Process(target=serve_forever, args=(broker.url, ready, stop_event))
            proc.start()
            if not ready.wait(30):
                raise SystemExit("the server process did not start")
        try:
            client = rpc.RPCClient(transport, TOPIC, timeout=10)
            ctxt = RequestContext(user_id="bench", project_id="bench", roles=["admin"])
            payload = {"instance_id": "0d3c4a8e-5a8b-4f0e-9f39-1c1f8f0b2d11", "flavor": "m1.small"}

            for _ in range(100):  # warm up: connection, channels, JIT-less Python caches
                client.call(ctxt, "ping", payload=payload)
            latencies = []
            for _ in range(args.calls):
                started = time.perf_counter()
                client.call(ctxt, "ping", payload=payload)
                latencies.append((time.perf_counter() - started) * 1000)
            latencies.sort()
            p50 = percentile(latencies, 50)
            print(
                f"RPC call round trip over {args.calls} calls (server in a {args.server}): "
                f"p50 {p50:.3f} ms, p95 {percentile(latencies, 95):.3f} ms, "
                f"p99 {percentile(latencies, 99):.3f} ms, "
                f"mean {statistics.fmean(latencies):.3f} ms, max {latencies[-1]:.3f} ms"
            )
            print(f"RPC call round trip p50 target <= {TARGET_P50_MS:g} ms (measured {p50:.3f} ms)")

            started = time.perf_counter()
            for i in range(args.casts):
                client.cast(ctxt, "bump", n=i)
            confirmed = time.perf_counter() - started
            while client.call(ctxt, "cast_count") < args.casts:
                time.sleep(0.01)
            processed = time.perf_counter() - started
            print(
                f"cast (persistent, durable queue, publisher-confirmed, one at a time): "
                f"{args.casts / confirmed:.0f} msg/s confirmed "
                f"({confirmed / args.casts * 1000:.3f} ms per cast); "
                f"all {args.casts} processed after {processed:.2f} s "
                f"({args.casts / processed:.0f} msg/s end to end)"
            )
        finally:
            if server is not None:
                server.stop()
                server.wait()
            if proc is not None:
                stop_event.set()
                proc.join(30)
            transport.close()


if __name__ == "__main__":
    main()
