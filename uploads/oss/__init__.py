"""The server's own OSS operations (the only package that imports oss2).

Assumes on the cloud side: the server's RAM user (ALIBABA_ACCESS_KEY_ID/SECRET) may HeadObject,
GetObject (to sign download URLs), DeleteObject (also through DeleteMultipleObjects), ListObjects,
ListMultipartUploads and AbortMultipartUpload (account erasure) on OSS_BUCKET. Apps never get
these credentials; they upload with STS credentials scoped to their own prefix, or with upload
URLs and forms the server signs with those same per-user STS credentials (`Signer`), so the
RAM user itself never needs oss:PutObject.

Every call reads the settings when made, has a bounded timeout (the upload callback must answer
within OSS's 5-second budget and calls this module on its way), and turns SDK errors into
`StorageUnavailable` or a plain result (`None` / `False`) where absence is an answer.

One module per concern: `client` (the per-thread oss2 client and its HeadObject transport),
`objects` (HeadObject, deletes, listing, download URLs), `variants` (image-process URLs) and
`presign` (upload URLs and forms). Callers import from `uploads.oss`.
"""

from uploads.oss.client import RECONCILE_TIMEOUT_SECONDS, StorageUnavailable
from uploads.oss.objects import (
    DeleteResult,
    ListedObject,
    ObjectInfo,
    ObjectPage,
    SignedUrl,
    oss_abort_multipart_uploads,
    oss_browser_origins,
    oss_delete_object,
    oss_delete_objects,
    oss_head_object,
    oss_list_page,
    oss_sign_download_url,
)
from uploads.oss.presign import (
    V4_ALGORITHM,
    Signer,
    oss_bucket_url,
    oss_post_signer_fields,
    oss_presign_put,
    oss_sign_post_policy,
)
from uploads.oss.variants import IMG_SOURCE_TYPES, ProcessUrls, oss_sign_process_urls

__all__ = [
    "IMG_SOURCE_TYPES",
    "RECONCILE_TIMEOUT_SECONDS",
    "V4_ALGORITHM",
    "DeleteResult",
    "ListedObject",
    "ObjectInfo",
    "ObjectPage",
    "ProcessUrls",
    "SignedUrl",
    "Signer",
    "StorageUnavailable",
    "oss_abort_multipart_uploads",
    "oss_browser_origins",
    "oss_bucket_url",
    "oss_delete_object",
    "oss_delete_objects",
    "oss_head_object",
    "oss_list_page",
    "oss_post_signer_fields",
    "oss_presign_put",
    "oss_sign_download_url",
    "oss_sign_post_policy",
    "oss_sign_process_urls",
]
