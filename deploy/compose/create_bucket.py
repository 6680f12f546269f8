"""Create the compose stack's S3 bucket (idempotent), once SeaweedFS accepts writes.

Run by the one-shot `s3-init` service of docker-compose.yml with the same MTAI_S3_* variables as
the API and the worker; it uses botocore, which the mtai image already has.
"""

from __future__ import annotations

import os
import sys
import time

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

TIMEOUT_SECONDS = 180.0
# Wrong credentials do not heal by waiting.
FATAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch"}


def main() -> int:
    bucket = os.environ["MTAI_S3_BUCKET"]
    client = botocore.session.get_session().create_client(
        "s3",
        region_name=os.environ.get("MTAI_S3_REGION", "us-east-1"),
        endpoint_url=os.environ["MTAI_S3_ENDPOINT_URL"],
        aws_access_key_id=os.environ["MTAI_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["MTAI_S3_SECRET_ACCESS_KEY"],
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=10,
            retries={"total_max_attempts": 1},
        ),
    )
    deadline = time.monotonic() + TIMEOUT_SECONDS
    last_error = ""
    while time.monotonic() < deadline:
        try:
            try:
                client.create_bucket(Bucket=bucket)
                print(f"s3-init: bucket {bucket} created", flush=True)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in {
                    "BucketAlreadyOwnedByYou",
                    "BucketAlreadyExists",
                }:
                    raise
            # Ready means writable: the volume server has joined the master.
            client.put_object(Bucket=bucket, Key=".s3-init-probe", Body=b"ok")
            client.delete_object(Bucket=bucket, Key=".s3-init-probe")
            print(f"s3-init: bucket {bucket} is ready", flush=True)
            return 0
        except ClientError as exc:
            if exc.response["Error"]["Code"] in FATAL_CODES:
                print(f"s3-init: {exc} (check MTAI_S3_ACCESS_KEY_ID/SECRET)", file=sys.stderr)
                return 1
            last_error = str(exc)
            time.sleep(2)
        except BotoCoreError as exc:
            last_error = str(exc)
            time.sleep(2)
    print(
        f"s3-init: bucket {bucket} not ready after {TIMEOUT_SECONDS:.0f} s: {last_error}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
