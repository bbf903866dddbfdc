"""Identity (SPEC §2): who is asking, from an OIDC access token validated against pinned keys."""

from even.identity.verifier import Identity, TokenVerifier

__all__ = ["Identity", "TokenVerifier"]
