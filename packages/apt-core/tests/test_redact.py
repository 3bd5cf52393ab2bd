"""Secrets never reach output: redact() masks what SDKs put in errors and debug logs."""

import pytest

from apt_core.errors import redact

SECRETS = ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY", "hf_abcdefghijklmnopqrst", "c0ffee1234abcd"]


@pytest.mark.parametrize("text", [
    "Authorization: Bearer hf_abcdefghijklmnopqrst",
    "{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=c0ffee1234abcd'}",
    "Authorization: OSS AKIAIOSFODNN7EXAMPLE:c0ffee1234abcd",
    "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F2026&X-Amz-Signature=c0ffee1234abcd",
    "aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "HF_TOKEN=hf_abcdefghijklmnopqrst",
    "request with Credential=AKIAIOSFODNN7EXAMPLE/2026 and Signature=c0ffee1234abcd failed",
])
def test_no_secret_survives(text):
    cleaned = redact(text)
    assert not any(secret in cleaned for secret in SECRETS), cleaned
    assert "***" in cleaned


def test_ordinary_text_is_untouched():
    text = "uploaded 3 objects (12.5 MB) to s3://bucket/prefix in 1.2 s"
    assert redact(text) == text
