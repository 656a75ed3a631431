"""The mobile app's client side, in Python: what docs/mobile-integration.md asks an app to do.

Each piece mirrors one part of the guide, with oss2 standing in for the mobile SDKs:

- `AppSession`: the signed-in user's JWT pair. A 401 refreshes once and retries; the refresh is
  single-flight (the server rotates refresh tokens and each is good once, so two refreshes at
  the same time would log the user out).
- `AppCredentialsProvider`: what the SDKs' federation credential provider does (cache the STS
  answer, fetch again 5 minutes before `Expiration`), plus what they cannot do: tell an expired
  session, a suspension or `Retry-After` apart instead of retrying blindly.
- `PendingUploads`: the tickets of uploads in progress, on disk before the first byte goes up,
  so a killed app resumes them (the SDKs' checkpoint keeps only the upload id) or aborts them
  once the ticket has expired.
- `upload_continue`: a resumable multipart upload (InitiateMultipartUpload with the ticket's
  Content-Type, the parts OSS does not have yet, CompleteMultipartUpload with the ticket's
  headers) whose HTTP 203 CallbackFailed is settled by the confirm endpoint, never by sending
  the bytes again.
"""

from .session import (
    CREDENTIALS_MARGIN,
    EXPIRATION_FORMAT,
    TIMEOUT,
    ApiError,
    AppCredentialsProvider,
    AppSession,
    SessionExpired,
    bucket_for,
    oss_bucket,
)
from .uploads import (
    MIN_PART_SIZE,
    PendingUploads,
    UploadOutcome,
    initiate_headers,
    put_small,
    settle,
    ticket_confirm,
    ticket_expired,
    upload_continue,
    upload_start,
    uploads_resume,
)

__all__ = [
    "CREDENTIALS_MARGIN",
    "EXPIRATION_FORMAT",
    "MIN_PART_SIZE",
    "TIMEOUT",
    "ApiError",
    "AppCredentialsProvider",
    "AppSession",
    "PendingUploads",
    "SessionExpired",
    "UploadOutcome",
    "bucket_for",
    "initiate_headers",
    "oss_bucket",
    "put_small",
    "settle",
    "ticket_confirm",
    "ticket_expired",
    "upload_continue",
    "upload_start",
    "uploads_resume",
]
