"""OSS upload callbacks, as OSS sends them after PutObject, PostObject and CompleteMultipartUpload.

What this reproduces of OSS (wire facts: docs/alibaba-wire.md, upload callbacks):

- `x-oss-callback` / `x-oss-callback-var` parsing: each header at most 5 KB, base64 of a JSON
  object; `callbackUrl` (required, up to 5 URLs joined by ";", http or https; a URL without a
  scheme means http), `callbackHost`, `callbackBody` (required, non-empty),
  `callbackBodyType` (`application/x-www-form-urlencoded`, the default, or `application/json`),
  `callbackSNI`. Custom variables are keys `x:<lowercase>` with string values. Any violation raises
  `CallbackArgumentError`, which the OSS layer turns into 400 InvalidArgument.
- Body rendering: `${bucket} ${object} ${etag} ${size} ${mimeType} ${imageInfo.height}
  ${imageInfo.width} ${imageInfo.format} ${crc64} ${contentMd5} ${vpcId} ${clientIp} ${reqId}
  ${operation}` and `${x:name}`; substituted values are URL-encoded in form bodies and
  JSON-escaped in JSON bodies, so an object key cannot break the body's syntax. A variable that
  has no value (an `x:` variable that was not sent, image fields of a non-image) becomes "".
- Image facts come from emulator.oss.images (the object's header bytes only).
- The POST OSS makes: the URLs are tried in order until one succeeds; headers `authorization`
  (base64 RSA PKCS#1 v1.5 signature with MD5 over `url_decode(path)` + `"?" + raw query` if any
  + "\\n" + body), `x-oss-pub-key-url` (base64 of the URL where the public key is served),
  `content-md5`, `content-type`, `date`, `user-agent: aliyun-oss-callback`, `x-oss-bucket`,
  `x-oss-owner`, `x-oss-requester`, `x-oss-request-id`, `x-oss-signature-version: 1.0`,
  `x-oss-tag: CALLBACK`, and `Host` = `callbackHost` when given (https callbacks always send
  SNI: Python's TLS stack gives no way to leave it out, so `callbackSNI` is parsed but has no
  effect). OSS signs with its own RSA key;
  the emulator signs with a key of its own, created once and persisted next to its data.
- The outcome: HTTP 200 with a valid JSON body (no BOM) within the timeout (5 seconds, bounded in
  total, not per socket read) is a success and that JSON becomes the upload's response body.
  Anything else is HTTP 203 with error XML `CallbackFailed` and OSS's messages ("Error status :
  502.", "Response body is not valid json format.", "... reply timeout ..."). OSS does not retry
  and the object stays stored; that part is the caller's (the OSS layer's) business.

Modules: spec (parsing and rendering) and sending (signing and the POST). Callers import from
`emulator.callbacks`.
"""

from emulator.callbacks.sending import CallbackSigner, send_callback, string_to_sign
from emulator.callbacks.spec import (
    FORM,
    JSON_TYPE,
    MAX_HEADER_BYTES,
    MAX_RESPONSE_BYTES,
    MAX_URLS,
    CallbackArgumentError,
    CallbackResult,
    CallbackSpec,
    ObjectFacts,
    parse_callback,
    render_body,
)

__all__ = [
    "FORM",
    "JSON_TYPE",
    "MAX_HEADER_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_URLS",
    "CallbackArgumentError",
    "CallbackResult",
    "CallbackSigner",
    "CallbackSpec",
    "ObjectFacts",
    "parse_callback",
    "render_body",
    "send_callback",
    "string_to_sign",
]
