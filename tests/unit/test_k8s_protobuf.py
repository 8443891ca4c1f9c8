"""Protobuf request bodies of kubectl's typed verbs (metalplane.api.k8s_protobuf): the
``k8s\\x00`` envelope around runtime.Unknown, decoded to the JSON shape. The bodies are
encoded by hand here (wire format), independently of the module's field table."""

from __future__ import annotations

import pytest

from metalplane.api.k8s_protobuf import BodyError, decode_object


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); lengths here stay under 128."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def envelope(api_version: bytes, kind: bytes, raw: bytes, encoding: bytes = b"") -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    body = field(1, type_meta) + field(2, raw) + field(4, b"")
    if encoding:
        body += field(3, encoding)
    return b"k8s\x00" + body


def test_a_secret_as_kubectl_create_secret_generic_sends_it() -> None:
    meta = field(1, b"s2") + field(3, b"lab") + field(11, field(1, b"role") + field(2, b"w")) \
        + field(8, b"")  # Go's zero creationTimestamp, always written
    raw = field(1, meta) + field(2, field(1, b"username") + field(2, b"admin")) \
        + field(2, field(1, b"password") + field(2, b"\x00\xff")) + field(3, b"Opaque")
    assert decode_object(envelope(b"v1", b"Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "s2", "namespace": "lab", "labels": {"role": "w"}},
        "data": {"username": "YWRtaW4=", "password": "AP8="}}


def test_a_namespace() -> None:
    raw = field(1, field(1, b"lab") + field(14, b"a.io/x")) + field(2, field(1, b"kubernetes"))
    assert decode_object(envelope(b"v1", b"Namespace", raw)) == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "lab", "finalizers": ["a.io/x"]},
        "spec": {"finalizers": ["kubernetes"]}}


@pytest.mark.parametrize(("body", "code"), [
    (b'{"kind": "Secret"}', 400),                                    # no k8s\x00 prefix
    (b"k8s\x00\x0a\xff", 400),                                       # does not parse
    (envelope(b"v1", b"ConfigMap", b""), 415),                       # not served
    (envelope(b"metal3.io/v1alpha1", b"BareMetalHost", b""), 415),
    (envelope(b"v1", b"Secret", b"", encoding=b"gzip"), 415),
])
def test_what_is_not_served_is_refused(body: bytes, code: int) -> None:
    with pytest.raises(BodyError) as err:
        decode_object(body)
    assert err.value.code == code
