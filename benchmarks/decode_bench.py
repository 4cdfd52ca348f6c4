"""Per-event cost of the stream's codec: decode_event (input) and encode_scores (output).

Run: ``python benchmarks/decode_bench.py [--events N]``. Prints microseconds per event
(best of 5 repeats) for a typical ~230-byte event, a minimal event, rejected values, and
the batch encoder at batch size 256. Target: decode < 5 µs for a typical event.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import orjson

from stream.events import EventRejected, decode_event, encode_scores

TYPICAL = orjson.dumps(
    {
        "id": "row-123456",
        "title": "Scientists discover a surprising new way to make coffee taste better every morning",
        "category": "Science & Technology",
        "published_at": "2026-11-24T23:29:23.123Z",
        "source": "example-wire",
        "lang": "en",
    }
)
MINIMAL = b'{"id":"1","title":"Hello world"}'


def best_us(func: Callable[[], object], n: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            func()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def rejecting(value: bytes | None) -> Callable[[], object]:
    def run() -> object:
        try:
            return decode_event(value, 65536)
        except EventRejected as exc:
            return exc

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    n = parser.parse_args().events

    print(f"typical event: {len(TYPICAL)} bytes")
    print(f"decode typical            {best_us(lambda: decode_event(TYPICAL, 65536), n):6.2f} µs/event")
    print(f"decode minimal            {best_us(lambda: decode_event(MINIMAL, 65536), n):6.2f} µs/event")
    print(f"orjson.loads typical      {best_us(lambda: orjson.loads(TYPICAL), n):6.2f} µs/event (reference)")
    for name, value in (
        ("null_value", None),
        ("not_utf8", b'{"id":"\xff","title":"x"}'),
        ("not_json", b'{"id":"x",'),
        ("schema", b'{"id":"x","title":"   "}'),
    ):
        print(f"reject {name:18s} {best_us(rejecting(value), n // 4):6.2f} µs/event")

    batch = 256
    rng = np.random.default_rng(0)
    ids = [f"row-{i}" for i in range(batch)]
    cols = [rng.random(batch) for _ in range(3)]
    labels = cols[2] > 0.5
    times = np.full(batch, time.time())

    def encode() -> object:
        return encode_scores(
            ids,
            cols[0],
            cols[1],
            cols[2],
            labels,
            model_version="20260101-000000-abc",
            event_times=times,
            scored_at=time.time(),
            partitions=np.zeros(batch, dtype=np.int64),
            offsets=np.arange(batch),
        )

    per_batch = best_us(encode, max(1, n // batch))
    print(f"encode_scores (batch {batch})  {per_batch / batch:6.2f} µs/event")


if __name__ == "__main__":
    main()
