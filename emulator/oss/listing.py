"""ListObjects (v1 and v2): prefixes, delimiters, markers, continuation tokens, url encoding."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from emulator.oss.errors import invalid_argument
from emulator.oss.pipeline import (
    OssPipeline,
    PrincipalLike,
    Target,
    url_encoder,
    xml,
)
from emulator.oss.storage import ObjectRecord
from emulator.oss.wire import Request, Response
from emulator.oss.xmlbody import Node, iso_time, render

_SCAN_BATCH = 1000
_HIGHEST_CHAR = chr(0x10FFFF)


class ListingOperations(OssPipeline):
    def _list_params(self, request: Request) -> tuple[str, str, int, bool]:
        query = request.query
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys_text = query.get("max-keys", "100")
        if not max_keys_text.isdigit() or not 0 <= int(max_keys_text) <= 1000:
            raise invalid_argument(
                "Argument max-keys must be an integer between 0 and 1000.",
                ArgumentName="max-keys",
                ArgumentValue=max_keys_text,
            )
        encoding = query.get("encoding-type", "")
        if encoding not in ("", "url"):
            raise invalid_argument(
                "The encoding-type parameter must be url.", ArgumentName="encoding-type"
            )
        return prefix, delimiter, int(max_keys_text), encoding == "url"

    def _authorize_list(
        self, principal: PrincipalLike, request: Request, bucket: str, prefix: str, delimiter: str
    ) -> None:
        self.authorize(
            principal,
            request,
            action="oss:ListObjects",
            bucket=bucket,
            key=None,
            context={"oss:Prefix": prefix, "oss:Delimiter": delimiter},
        )

    def _collect(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[ObjectRecord], list[str], bool, str]:
        """Walk keys after `after`: (objects, common prefixes, truncated, last item returned).

        The walk reads the bucket's sorted key index in batches and jumps over each common
        prefix, so a page costs about its own size, not the bucket's.
        """
        objects: list[ObjectRecord] = []
        prefixes: list[str] = []
        last = ""
        cursor = after
        while True:
            batch = self.storage.scan(bucket, after=cursor, prefix=prefix, limit=_SCAN_BATCH)
            if not batch:
                return objects, prefixes, False, last
            for record in batch:
                key = record.key
                cursor = key
                common = None
                if delimiter:
                    index = key.find(delimiter, len(prefix))
                    if index >= 0:
                        common = key[: index + len(delimiter)]
                if common is None:
                    if len(objects) + len(prefixes) >= max_keys:
                        return objects, prefixes, True, last
                    objects.append(record)
                    last = key
                    continue
                if common > after:
                    if len(objects) + len(prefixes) >= max_keys:
                        return objects, prefixes, True, last
                    prefixes.append(common)
                    last = common
                # Every key under this common prefix sorts before common + the highest char.
                cursor = common + _HIGHEST_CHAR
                break

    def _contents(self, records: list[ObjectRecord], encode: Callable[[str], str]) -> list[Node]:
        return [
            (
                "Contents",
                [
                    ("Key", encode(r.key)),
                    ("LastModified", iso_time(r.last_modified)),
                    ("ETag", f'"{r.etag}"'),
                    ("Type", r.object_type),
                    ("Size", str(r.size)),
                    ("StorageClass", "Standard"),
                    ("Owner", self._owner()),
                ],
            )
            for r in records
        ]

    def op_ListObjects(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        prefix, delimiter, max_keys, url = self._list_params(request)
        self._authorize_list(principal, request, bucket, prefix, delimiter)
        marker = request.query.get("marker", "")
        objects, prefixes, truncated, last = self._collect(
            bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
        )
        encode = url_encoder(url)
        children: list[Node] = [
            ("Name", bucket),
            ("Prefix", encode(prefix)),
            ("Marker", encode(marker)),
            ("MaxKeys", str(max_keys)),
            ("Delimiter", encode(delimiter)),
        ]
        if url:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", "true" if truncated else "false"))
        if truncated:
            children.append(("NextMarker", encode(last)))
        children += self._contents(objects, encode)
        children += [("CommonPrefixes", [("Prefix", encode(p))]) for p in prefixes]
        return xml(render("ListBucketResult", children))

    def op_ListObjectsV2(
        self, request: Request, target: Target, principal: PrincipalLike
    ) -> Response:
        bucket = self._bucket(target)
        prefix, delimiter, max_keys, url = self._list_params(request)
        self._authorize_list(principal, request, bucket, prefix, delimiter)
        token = request.query.get("continuation-token") or None
        start_after = request.query.get("start-after", "")
        after = start_after
        if token is not None:
            try:
                after = base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
            except (binascii.Error, ValueError):
                raise invalid_argument(
                    "The continuation token provided is incorrect.",
                    ArgumentName="continuation-token",
                ) from None
        objects, prefixes, truncated, last = self._collect(
            bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
        )
        encode = url_encoder(url)
        children: list[Node] = [
            ("Name", bucket),
            ("Prefix", encode(prefix)),
            ("MaxKeys", str(max_keys)),
            ("Delimiter", encode(delimiter)),
        ]
        if start_after:
            children.append(("StartAfter", encode(start_after)))
        if token is not None:
            children.append(("ContinuationToken", token))
        if url:
            children.append(("EncodingType", "url"))
        children.append(("IsTruncated", "true" if truncated else "false"))
        if truncated:
            next_token = base64.urlsafe_b64encode(last.encode()).decode()
            children.append(("NextContinuationToken", next_token))
        children.append(("KeyCount", str(len(objects) + len(prefixes))))
        children += self._contents(objects, encode)
        children += [("CommonPrefixes", [("Prefix", encode(p))]) for p in prefixes]
        return xml(render("ListBucketResult", children))
