"""The pages' Content-Security-Policy names every origin their images come from: the bucket
(path style and virtual-hosted) and, when thumbnails are served by a CDN, the CDN."""

from __future__ import annotations

import pytest


def _img_src(response) -> list[str]:
    directives = dict(
        part.strip().split(" ", 1)
        for part in response["Content-Security-Policy"].split(";")
        if " " in part.strip()
    )
    return directives["img-src"].split()


@pytest.mark.slow(4)
@pytest.mark.django_db
def test_the_upload_page_loads_thumbnails_from_the_variant_cdn(client, settings):
    settings.OSS_PUBLIC_ENDPOINT = "https://oss-cn-hangzhou.aliyuncs.com"
    settings.OSS_BUCKET = "photos"
    settings.IMAGE_VARIANT_ENDPOINT = "https://img.example.com/"

    sources = _img_src(client.get("/upload/"))

    assert "https://oss-cn-hangzhou.aliyuncs.com" in sources
    assert "https://photos.oss-cn-hangzhou.aliyuncs.com" in sources
    assert "https://img.example.com" in sources


@pytest.mark.django_db
def test_without_a_cdn_only_the_bucket_is_added(client, settings):
    settings.OSS_PUBLIC_ENDPOINT = "https://oss-cn-hangzhou.aliyuncs.com"
    settings.OSS_BUCKET = "photos"
    settings.IMAGE_VARIANT_ENDPOINT = ""

    sources = _img_src(client.get("/upload/"))

    assert "https://img.example.com" not in sources
    assert "https://photos.oss-cn-hangzhou.aliyuncs.com" in sources
