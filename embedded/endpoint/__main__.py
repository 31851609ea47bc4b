"""The local online endpoint: a real HTTP server hosting named deployments (blue/green ...).

``python -m embedded.endpoint --data-dir D --name N`` runs one as its own process.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from embedded.endpoint.server import EndpointServer


def main(argv: list[str] | None = None) -> int:
    """Run one endpoint as its own process until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m embedded.endpoint",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the platform's data folder")
    parser.add_argument("--name", required=True, help="endpoint name")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from shared import log_escape

    log_escape.install()  # request and alert text cannot forge log lines
    server = EndpointServer(args.name, args.data_dir.resolve())
    print(f"endpoint {args.name} serving {server.start(port=args.port)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
