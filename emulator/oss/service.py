"""The OSS service: the request pipeline with every operation the emulator implements."""

from __future__ import annotations

from emulator.oss.buckets import BucketOperations
from emulator.oss.listing import ListingOperations
from emulator.oss.multipart import MultipartOperations
from emulator.oss.objects import ObjectOperations
from emulator.oss.pipeline import MAX_SINGLE_PUT

__all__ = ["MAX_SINGLE_PUT", "OssService"]


class OssService(BucketOperations, ListingOperations, ObjectOperations, MultipartOperations):
    """Dispatches each request to the `op_<Operation>` method of the mixin that implements it."""
