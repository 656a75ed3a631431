"""Small XML writer and the two request bodies OSS parses (CompleteMultipartUpload, Delete)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import formatdate
from xml.sax.saxutils import escape

from emulator.oss.errors import OssError, malformed_xml

Node = tuple[str, "str | list[Node]"]


def render(root: str, children: list[Node]) -> bytes:
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _render_node(parts, (root, children))
    return "".join(parts).encode()


def _render_node(parts: list[str], node: Node) -> None:
    name, value = node
    if isinstance(value, str):
        parts.append(f"<{name}>{escape(value)}</{name}>")
        return
    parts.append(f"<{name}>")
    for child in value:
        _render_node(parts, child)
    parts.append(f"</{name}>")


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def http_time(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def _parse(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise malformed_xml("Document type declarations are not allowed.")
    try:
        return ET.fromstring(body)  # noqa: S314 - DTDs refused above
    except ET.ParseError:
        raise malformed_xml() from None


def parse_complete_multipart(body: bytes) -> list[tuple[int, str]]:
    root = _parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise malformed_xml()
    parts: list[tuple[int, str]] = []
    for node in root.findall("Part"):
        number_text = (node.findtext("PartNumber") or "").strip()
        etag = (node.findtext("ETag") or "").strip()
        if not number_text.isdigit() or not etag:
            raise malformed_xml()
        number = int(number_text)
        if not 1 <= number <= 10000:
            raise OssError(400, "InvalidPartNumber", "The part number must be 1 to 10000.")
        parts.append((number, etag))
    return parts


def parse_delete(body: bytes) -> tuple[bool, list[str]]:
    root = _parse(body)
    if root.tag != "Delete":
        raise malformed_xml()
    quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
    keys = []
    for node in root.findall("Object"):
        key = node.findtext("Key")
        if not key:
            raise malformed_xml()
        keys.append(key)
    if not keys or len(keys) > 1000:
        raise malformed_xml("A Delete request lists 1 to 1000 objects.")
    return quiet, keys
