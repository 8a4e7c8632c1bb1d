"""S3's naming rules for general-purpose buckets, apart from the allowlist that uses them (worker/buckets.py).

A leaf: the settings validate `LLAVAGUARD_S3_ALLOWED_BUCKETS` with it at start, so it must never import
anything from worker (settings import nothing from the packages they configure).
"""

from __future__ import annotations

import re

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_SHAPED = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
"""Access-point and Object Lambda aliases, multi-region access points, directory and table buckets."""


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a plain general-purpose S3 bucket name, or None when it is one."""
    if name.lower().startswith("arn:") or ":" in name or "/" in name:
        return "is an ARN or not a bucket name (S3 ARNs are not accepted; name the bucket)"
    if not _NAME.fullmatch(name) or ".." in name or ".-" in name or "-." in name:
        return "is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)"
    if _IP_SHAPED.fullmatch(name):
        return "is shaped like an IP address, which S3 bucket names may not be"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "is an access-point alias or a reserved S3 name, not a bucket name"
    return None
