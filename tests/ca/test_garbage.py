"""Garbage in, only our errors out: the readers of user-supplied files (Hypothesis)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ca.bundle import Bundle, encode_bundle, parse_bundle
from ca.inspect import describe_input
from ca.profiles import generate_key, intermediate
from core.errors import AlbatrossError
from core.pem import certificates_from, csr_from, objects_from, private_key_from
from core.wire import Policy
from tests.ca.helpers import CERTS, NOW, ca_of

SAMPLE = CERTS.joinpath("ca/alice.pem").read_bytes()


def _bundle_bytes() -> bytes:
    root, root_key = ca_of("root")
    key = generate_key()
    cert = intermediate(root, root_key, key.public_key(), "f", Policy(1, frozenset({0}), 32), NOW)
    return encode_bundle(Bundle("f", (cert,), key, (root,), "h:1", "h"))


BUNDLE = _bundle_bytes()
_PEM_LIKE = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda a, b: SAMPLE[: a % len(SAMPLE)] + b, st.integers(0, 10_000), st.binary(max_size=50)
    ),
    st.builds(
        lambda b: b"-----BEGIN CERTIFICATE-----\n" + b + b"\n-----END CERTIFICATE-----\n",
        st.binary(max_size=80),
    ),
    st.builds(lambda t: ("Albatross-Bundle: 1\n" + t).encode(), st.text(max_size=80)),
)


@given(_PEM_LIKE)
def test_readers_raise_only_our_errors(data: bytes) -> None:
    for reader in (
        certificates_from,
        csr_from,
        private_key_from,
        objects_from,
        parse_bundle,
        describe_input,
    ):
        with contextlib.suppress(AlbatrossError):
            reader(data)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@given(st.sampled_from([SAMPLE, BUNDLE]), st.integers(0, 10_000), st.integers(0, 255))
def test_flipped_byte_in_a_certificate_or_bundle(sample: bytes, position: int, value: int) -> None:
    data = bytearray(sample)
    position %= len(data)
    data[position] = value
    with contextlib.suppress(AlbatrossError):
        describe_input(bytes(data))
