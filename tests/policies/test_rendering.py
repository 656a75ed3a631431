"""Session policies: exact documents for every template, and every way a template can be wrong."""

from __future__ import annotations

import json

import pytest

from policies.grammar import parse_policy
from policies.services import (
    PolicyTemplateError,
    policy_for_user,
    policy_render,
    policy_render_text,
    scope_allowed_for,
)

BUCKET = "app-uploads"
PREFIX = "users/0123456789abcdef0123456789abcdef/"
OBJECTS = f"acs:oss:*:*:{BUCKET}/{PREFIX}*"
LISTING = {
    "Effect": "Allow",
    "Action": ["oss:ListObjects"],
    "Resource": [f"acs:oss:*:*:{BUCKET}"],
    "Condition": {"StringLike": {"oss:Prefix": [f"{PREFIX}*"]}},
}


def no_overwrite_no_acl(resource: str) -> list[dict]:
    """Every template that allows uploads denies those that could replace an object or set an
    ACL (OSS refuses an existing key only when the request says x-oss-forbid-overwrite: true)."""
    return [
        {
            "Effect": "Deny",
            "Action": ["oss:PutObject"],
            "Resource": [resource],
            "Condition": {"StringNotEquals": {"oss:x-oss-forbid-overwrite": ["true"]}},
        },
        {
            "Effect": "Deny",
            "Action": ["oss:PutObject"],
            "Resource": [resource],
            "Condition": {"StringLike": {"oss:x-oss-object-acl": ["*"]}},
        },
    ]


# What every user scope that writes adds: the guards above, and none of the writes an app never
# needs (its deletions go through the app server).
UPLOAD_GUARDS = [
    *no_overwrite_no_acl(OBJECTS),
    {
        "Effect": "Deny",
        "Action": [
            "oss:DeleteObject",
            "oss:PutObjectAcl",
            "oss:PutObjectTagging",
            "oss:DeleteObjectTagging",
            "oss:RestoreObject",
        ],
        "Resource": [OBJECTS],
    },
]

EXPECTED_USER = {
    "read": {
        "Version": "1",
        "Statement": [
            {"Effect": "Allow", "Action": ["oss:GetObject"], "Resource": [OBJECTS]},
            LISTING,
        ],
    },
    "write": {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["oss:PutObject", "oss:ListParts", "oss:AbortMultipartUpload"],
                "Resource": [OBJECTS],
            },
            *UPLOAD_GUARDS,
        ],
    },
    "readwrite": {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "oss:GetObject",
                    "oss:PutObject",
                    "oss:ListParts",
                    "oss:AbortMultipartUpload",
                ],
                "Resource": [OBJECTS],
            },
            LISTING,
            *UPLOAD_GUARDS,
        ],
    },
}

EXPECTED_BUCKET_WIDE = {
    "all": {
        "Version": "1",
        "Statement": [
            {"Effect": "Allow", "Action": ["oss:*"], "Resource": ["acs:oss:*:*:*"]},
            *no_overwrite_no_acl("acs:oss:*:*:*"),
        ],
    },
    "bucket_read": {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["oss:GetObject", "oss:ListObjects"],
                "Resource": [f"acs:oss:*:*:{BUCKET}/*", f"acs:oss:*:*:{BUCKET}"],
            }
        ],
    },
    "bucket_read_write": {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "oss:GetObject",
                    "oss:PutObject",
                    "oss:DeleteObject",
                    "oss:ListParts",
                    "oss:AbortMultipartUpload",
                    "oss:ListObjects",
                ],
                "Resource": [f"acs:oss:*:*:{BUCKET}/*", f"acs:oss:*:*:{BUCKET}"],
            },
            *no_overwrite_no_acl(f"acs:oss:*:*:{BUCKET}/*"),
        ],
    },
}


@pytest.mark.parametrize("scope", sorted(EXPECTED_USER))
def test_per_user_scopes_render_exactly(scope):
    assert policy_render(template=scope, bucket=BUCKET, prefix=PREFIX) == EXPECTED_USER[scope]


@pytest.mark.parametrize("template", sorted(EXPECTED_BUCKET_WIDE))
def test_sample_server_templates_render_exactly(template):
    rendered = policy_render(template=template, bucket=BUCKET, prefix=None)
    assert rendered == EXPECTED_BUCKET_WIDE[template]


@pytest.mark.parametrize("scope", [*sorted(EXPECTED_USER), *sorted(EXPECTED_BUCKET_WIDE)])
def test_text_is_minified_valid_ram_and_hashed(scope):
    prefix = PREFIX if scope in EXPECTED_USER else None
    rendered = policy_render_text(template=scope, bucket=BUCKET, prefix=prefix)
    expected = {**EXPECTED_USER, **EXPECTED_BUCKET_WIDE}[scope]
    assert rendered.text == json.dumps(expected, separators=(",", ":"))
    assert parse_policy(rendered.text) == expected
    assert len(rendered.sha256) == 64
    assert len(rendered.text) <= 2048


def test_user_policy_uses_the_public_id_prefix(user, settings):
    settings.OSS_BUCKET = BUCKET
    rendered = policy_for_user(user=user, scope="readwrite")
    assert rendered.prefix == f"users/{user.public_id}/"
    assert rendered.document["Statement"][0]["Resource"] == [
        f"acs:oss:*:*:{BUCKET}/users/{user.public_id}/*"
    ]
    assert user.username not in rendered.text


def test_a_different_prefix_gives_a_different_hash():
    one = policy_render_text(template="readwrite", bucket=BUCKET, prefix="users/a/")
    two = policy_render_text(template="readwrite", bucket=BUCKET, prefix="users/b/")
    assert one.sha256 != two.sha256


@pytest.mark.parametrize(
    ("template", "bucket", "prefix", "problem"),
    [
        ("nope", BUCKET, None, "no such template"),
        ("../settings", BUCKET, None, "not a valid template name"),
        ("readwrite", BUCKET, None, "it is per-user and needs a prefix"),
        ("bucket_read", BUCKET, PREFIX, "it is bucket-wide and takes no prefix"),
        ("readwrite", "Bad_Bucket", PREFIX, "'Bad_Bucket' is not a valid OSS bucket name"),
        ("readwrite", BUCKET, "users/*/", "must be a folder path ending in '/'"),
        ("readwrite", BUCKET, "users/a", "must be a folder path ending in '/'"),
        ("readwrite", BUCKET, 'users/a"}/', "must be a folder path ending in '/'"),
    ],
)
def test_bad_arguments_name_the_template(template, bucket, prefix, problem):
    with pytest.raises(PolicyTemplateError) as caught:
        policy_render(template=template, bucket=bucket, prefix=prefix)
    assert caught.value.template == template
    assert str(caught.value).startswith(f'Policy template "{template}": ')
    assert problem in caught.value.problem


@pytest.fixture
def template_dir(tmp_path, settings):
    settings.POLICY_TEMPLATES_DIR = tmp_path
    return tmp_path


def test_broken_json_template_is_named(template_dir):
    (template_dir / "broken.json").write_text('{"Version": "1", "Statement": [')
    with pytest.raises(PolicyTemplateError) as caught:
        policy_render(template="broken", bucket=BUCKET, prefix=None)
    assert caught.value.template == "broken"
    assert "the file broken.json is not valid JSON" in str(caught.value)


def test_template_with_bad_ram_grammar_is_named(template_dir):
    statement = {"Effect": "Allow", "Action": ["oss:GetObject"], "Resources": ["x"]}
    (template_dir / "typo.json").write_text(json.dumps({"Version": "1", "Statement": [statement]}))
    with pytest.raises(PolicyTemplateError) as caught:
        policy_render(template="typo", bucket=BUCKET, prefix=None)
    assert str(caught.value) == (
        'Policy template "typo": The policy has a grammar error: statement 1: unknown element '
        "Resources."
    )


def test_unknown_placeholder_is_refused(template_dir):
    statement = {"Effect": "Allow", "Action": ["oss:GetObject"], "Resource": ["$BUCKET/$USER*"]}
    (template_dir / "odd.json").write_text(json.dumps({"Version": "1", "Statement": [statement]}))
    with pytest.raises(PolicyTemplateError) as caught:
        policy_render(template="odd", bucket=BUCKET, prefix=None)
    assert caught.value.problem == "it has a placeholder this renderer does not know."


def test_rendered_policy_over_2048_characters_is_refused():
    short = policy_render_text(template="readwrite", bucket=BUCKET, prefix="z/")
    prefix = "z" * 900 + "/"
    # The prefix appears in every object statement and in the listing condition.
    occurrences = short.text.count("z/")
    assert occurrences == 5
    length = len(short.text) + occurrences * (len(prefix) - 2)
    assert length > 2048
    with pytest.raises(PolicyTemplateError) as caught:
        policy_render(template="readwrite", bucket=BUCKET, prefix=prefix)
    assert caught.value.problem == (
        f"the rendered policy has {length} characters; STS accepts at most 2048."
    )


def test_substitution_cannot_inject_json():
    # A prefix is substituted inside JSON strings after parsing, never pasted into the text.
    prefix = "users/a,b;c=d@e/"
    document = policy_render(template="write", bucket=BUCKET, prefix=prefix)
    assert document["Statement"][0]["Resource"] == [f"acs:oss:*:*:{BUCKET}/{prefix}*"]


@pytest.mark.parametrize(
    ("scope", "staff", "superuser", "allowed"),
    [
        ("read", False, False, True),
        ("write", False, False, True),
        ("readwrite", False, False, True),
        ("bucket_read", False, False, False),
        ("bucket_read_write", False, False, False),
        ("all", False, False, False),
        ("bucket_read", True, False, True),
        ("bucket_read_write", True, False, True),
        ("all", True, False, False),
        ("all", True, True, True),
        ("nope", True, True, False),
    ],
)
def test_bucket_wide_scopes_are_for_staff(scope, staff, superuser, allowed):
    assert scope_allowed_for(scope=scope, is_staff=staff, is_superuser=superuser) is allowed
