"""What the S3 tests do to the test server without going through thresher:
make buckets, upload and download folders, count unfinished multipart
uploads. Talks to $AWS_ENDPOINT_URL with boto3 (installed with moto).

usage: s3_tool.py mkbucket BUCKET
       s3_tool.py upload DIR s3://BUCKET/PREFIX
       s3_tool.py download s3://BUCKET/PREFIX DIR
       s3_tool.py uploads BUCKET          (prints the number of unfinished multipart uploads)
"""

import os
import sys

import boto3


def client():
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def split(url):
    bucket, _, prefix = url[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def main(argv):
    s3 = client()
    if argv[1] == "mkbucket":
        s3.create_bucket(Bucket=argv[2])
    elif argv[1] == "upload":
        bucket, prefix = split(argv[3])
        for root, _, files in os.walk(argv[2]):
            for name in files:
                path = os.path.join(root, name)
                key = "/".join(filter(None, [prefix, os.path.relpath(path, argv[2]).replace(os.sep, "/")]))
                s3.upload_file(path, bucket, key)
    elif argv[1] == "download":
        bucket, prefix = split(argv[2])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                path = os.path.join(argv[3], obj["Key"][len(prefix) + 1:])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                s3.download_file(bucket, obj["Key"], path)
    elif argv[1] == "uploads":
        print(len(s3.list_multipart_uploads(Bucket=argv[2]).get("Uploads", [])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
