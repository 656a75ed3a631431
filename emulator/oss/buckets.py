"""Service- and bucket-level operations: ListBuckets, PutBucket, GetBucketInfo, Location."""

from __future__ import annotations

from emulator.oss.errors import OssError
from emulator.oss.pipeline import (
    MAX_XML_BODY,
    OssPipeline,
    PrincipalLike,
    Target,
    xml,
)
from emulator.oss.wire import Request, Response
from emulator.oss.xmlbody import Node, iso_time, render


class BucketOperations(OssPipeline):
    def op_ListBuckets(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        if not principal.is_root:
            self.authorize(principal, request, action="oss:ListBuckets", bucket="*", key=None)
        buckets: list[Node] = []
        for name in self.storage.bucket_names():
            bucket = self.storage.bucket(name)
            buckets.append(
                (
                    "Bucket",
                    [
                        ("CreationDate", iso_time(bucket.created)),
                        ("ExtranetEndpoint", f"oss-{bucket.region}.aliyuncs.com"),
                        ("IntranetEndpoint", f"oss-{bucket.region}-internal.aliyuncs.com"),
                        ("Location", f"oss-{bucket.region}"),
                        ("Name", name),
                        ("Region", bucket.region),
                        ("StorageClass", "Standard"),
                    ],
                )
            )
        body = render(
            "ListAllMyBucketsResult",
            [("Owner", self._owner()), ("Buckets", buckets)],
        )
        return xml(body)

    def _owner(self) -> list[Node]:
        return [("ID", self.config.account_id), ("DisplayName", self.config.account_id)]

    def op_PutBucket(self, request: Request, target: Target, principal: PrincipalLike) -> Response:
        assert target.bucket is not None
        self.authorize(principal, request, action="oss:PutBucket", bucket=target.bucket, key=None)
        request.body.read_all(MAX_XML_BODY)  # an optional CreateBucketConfiguration
        if not self.storage.create_bucket(target.bucket, region=self.config.region, now=self.now()):
            raise OssError(
                409,
                "BucketAlreadyExists",
                "The requested bucket name is not available.",
                extra={"BucketName": target.bucket},
            )
        return Response(200, {"Location": f"/{target.bucket}"})

    def op_DeleteBucket(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        self.authorize(principal, request, action="oss:DeleteBucket", bucket=bucket, key=None)
        self.storage.delete_bucket(bucket)
        return Response(204, {})

    def op_GetBucketInfo(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket_name = self._bucket(target)
        self.authorize(principal, request, action="oss:GetBucketInfo", bucket=bucket_name, key=None)
        bucket = self.storage.bucket(bucket_name)
        if request.method == "HEAD":
            return Response(200, {})
        body = render(
            "BucketInfo",
            [
                (
                    "Bucket",
                    [
                        ("AccessMonitor", "Disabled"),
                        ("CreationDate", iso_time(bucket.created)),
                        ("ExtranetEndpoint", f"oss-{bucket.region}.aliyuncs.com"),
                        ("IntranetEndpoint", f"oss-{bucket.region}-internal.aliyuncs.com"),
                        ("Location", f"oss-{bucket.region}"),
                        ("StorageClass", "Standard"),
                        ("TransferAcceleration", "Disabled"),
                        ("CrossRegionReplication", "Disabled"),
                        ("Name", bucket.name),
                        ("DataRedundancyType", "LRS"),
                        ("Owner", self._owner()),
                        ("AccessControlList", [("Grant", "private")]),
                        ("Comment", ""),
                        ("BucketPolicy", [("LogBucket", ""), ("LogPrefix", "")]),
                    ],
                )
            ],
        )
        return xml(body)

    def op_GetBucketLocation(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket_name = self._bucket(target)
        self.authorize(
            principal, request, action="oss:GetBucketLocation", bucket=bucket_name, key=None
        )
        bucket = self.storage.bucket(bucket_name)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<LocationConstraint>oss-{bucket.region}</LocationConstraint>"
        ).encode()
        return xml(body)
