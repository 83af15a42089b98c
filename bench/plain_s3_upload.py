#!/usr/bin/env python3
"""The baseline for bench/cloud.py: upload every file of a tree to S3 with plain boto3, N uploads at a time.

No chunking, compression or encryption: what the network path alone costs, with the
same SDK, the same server and the same concurrency that coldvault is given.
"""

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    client = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="eu-west-1",
        config=Config(max_pool_connections=2 * args.in_flight, s3={"addressing_style": "path"}),
    )
    files = [Path(d) / f for d, _, names in os.walk(args.root) for f in names]
    files = [p for p in files if p.is_file() and not p.is_symlink()]
    with ThreadPoolExecutor(args.in_flight) as pool:
        for future in [
            pool.submit(client.upload_file, str(p), args.bucket, str(p.relative_to(args.root))) for p in files
        ]:
            future.result()


if __name__ == "__main__":
    main()
