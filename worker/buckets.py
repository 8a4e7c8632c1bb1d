"""Which S3 buckets an `s3://` image may name: S3's bucket naming rules and the operator's allowlist.

Anyone who can submit (or write to Redis) chooses the bucket, and the worker reads it with its own
credentials; so only buckets the operator listed in `LLAVAGUARD_S3_ALLOWED_BUCKETS` are ever read. Names are
checked before boto3 sees them, because boto3 turns some "bucket names" into other endpoints: ARNs
(`arn:aws:s3:...:accesspoint/...`, Outposts, Object Lambda), multi-region access points, directory buckets
(`--x-s3`) and IP-shaped names. A refusal names only the bucket the caller sent and why; it never calls S3,
so it cannot reveal whether an object outside the allowlist exists or how large it is.
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.bucket_names import bucket_name_problem
from worker.errors import ErrorCode, ModerationFailed

ALLOWLIST_SETTING = "LLAVAGUARD_S3_ALLOWED_BUCKETS"


class BucketAllowlist:
    """The buckets `s3://` images may come from; empty: none at all. Immutable, shared by every thread."""

    def __init__(self, buckets: Iterable[str]) -> None:
        self.buckets = frozenset(buckets)
        for name in self.buckets:
            problem = bucket_name_problem(name)
            if problem is not None:
                raise ValueError(f"{ALLOWLIST_SETTING}: {name!r} {problem}")

    def check(self, bucket: str) -> None:
        """FETCH_ADDRESS_REFUSED unless `bucket` is listed; decided without any request to S3."""
        if bucket in self.buckets:
            return
        shown = bucket[:80]
        problem = bucket_name_problem(bucket)
        if problem is not None:
            raise ModerationFailed(ErrorCode.FETCH_ADDRESS_REFUSED, f"S3 bucket {shown!r} {problem}")
        if not self.buckets:
            message = f"s3:// images are not accepted here ({ALLOWLIST_SETTING} is empty)"
        else:
            message = f"S3 bucket {shown!r} is not in {ALLOWLIST_SETTING}"
        raise ModerationFailed(ErrorCode.FETCH_ADDRESS_REFUSED, message)
