"""core.certs.delegation_hops: the one walk of a chain's delegation paths outside authorize.

Anti-rollback, pins, metrics and the client's expiry read paths through it; they must be
the paths :func:`core.authorize.authorize` derives.
"""

from __future__ import annotations

from core.authorize import authorize
from core.certs import delegation_hops
from tests.security.pki import create, policy, root


def test_paths_are_authorize_s_paths_top_down() -> None:
    top = root()
    alice = top.delegate("Alice", policy())
    bob = alice.delegate("bob", policy(unikernels=1))
    chain = bob.leaf_chain("web", create())
    hops = list(delegation_hops(reversed([*chain[1:], top.cert])))
    assert [path for path, _ in hops] == [("alice",), ("alice", "bob")]
    assert [cert for _, cert in hops] == [alice.cert, bob.cert]  # the root carries no policy
    deepest = authorize(chain).policies[0][0]
    assert hops[-1][0] == deepest.path


def test_the_leaf_is_a_hop_only_if_given() -> None:
    top = root()
    alice = top.delegate("alice", policy())
    chain = alice.leaf_chain("web", create())
    with_leaf = [path for path, _ in delegation_hops(reversed(chain))]
    assert with_leaf == [("alice",), ("alice", "web")]  # callers pass the CAs: chain[1:]
