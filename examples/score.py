"""Send scoring requests to a model's local endpoint, as a production client would.

The embedded platform's endpoint listens on a free loopback port it records in
``<data dir>/platform/endpoints/<endpoint>.json``; this finds it there and posts
``examples/payloads/score-request.json`` (``{"rows": [{feature: value, ...}, ...]}``) to
``POST <url>/score``, which answers ``{"predictions": [...], "deployment": "<name>"}``.

    .venv/bin/python examples/score.py --endpoint credit-risk --requests 400
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint", default="credit-risk", help="default: credit-risk")
    parser.add_argument("--data-dir", default=".autopilot", help="default: ./.autopilot")
    parser.add_argument("--requests", type=int, default=1, help="how many (default: 1)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between (0.05)")
    parser.add_argument(
        "--body", default=str(HERE / "payloads" / "score-request.json"), help="request body file"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or not args.interval >= 0:
        parser.error("--requests must be 1 or more and --interval 0 or more")
    state = Path(args.data_dir) / "platform" / "endpoints" / f"{args.endpoint}.json"
    try:
        url = json.loads(state.read_text())["url"]
    except (OSError, ValueError, KeyError):
        print(
            f"no endpoint {args.endpoint!r} in {state.parent} (is a model deployed?)",
            file=sys.stderr,
        )
        return 2
    try:
        body = Path(args.body).read_bytes()
    except OSError as exc:
        print(f"cannot read --body {args.body}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    served: Counter[str] = Counter()
    for n in range(args.requests):
        request = urllib.request.Request(
            url + "/score", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = json.loads(response.read())
            served[answer["deployment"]] += 1
            if args.requests == 1:
                print(f"POST {url}/score -> {json.dumps(answer)}")
        except urllib.error.HTTPError as exc:  # the endpoint's answer says what was wrong
            problem = f"error: HTTP {exc.code} {exc.read().decode('utf-8', 'replace')[:300]}"
            served[problem] += 1
            if args.requests == 1:
                print(f"POST {url}/score -> {problem}", file=sys.stderr)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            served[f"error: {exc}"] += 1
            if args.requests == 1:
                print(f"POST {url}/score -> error: {exc}", file=sys.stderr)
        if args.requests > 1 and (n + 1) % 100 == 0:
            print(f"{n + 1} sent: " + ", ".join(f"{k} {v}" for k, v in served.items()), flush=True)
        if n + 1 < args.requests:
            time.sleep(args.interval)
    if args.requests > 1:
        print(
            f"POST {url}/score x{args.requests}: "
            + ", ".join(f"{k} {v}" for k, v in served.items())
        )
    failed = sum(v for k, v in served.items() if k.startswith("error: "))
    return 1 if failed == args.requests else 0  # exit 1 only when no request was served


if __name__ == "__main__":
    sys.exit(main())
