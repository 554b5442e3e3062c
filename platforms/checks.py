"""What the platforms' APIs accept, checked before anything is sent: Kubernetes object names, and ``UserError``,
the one error for a value a platform would refuse (nothing compiled or sent)."""

from __future__ import annotations

import re
from mlp_core.errors import UserError


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


# Kubernetes names (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/, "Object Names and IDs";
# apimachinery pkg/util/validation/validation.go IsDNS1123Label, IsDNS1123Subdomain, IsDNS1035Label):
# a DNS-1123 label is at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit;
# a DNS-1123 subdomain is such labels joined by '.', at most 253 characters; a DNS-1035 label starts with a letter.
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def check_dns1123_label(value: str, flag: str) -> str:
    """A namespace (and other label-named objects): a DNS-1123 label, or one ``UserError`` line naming the rule."""
    if not isinstance(value, str) or not DNS_1123_LABEL.fullmatch(value) or len(value) > 63:
        raise UserError(f"{flag} {_shown(value)} is not a DNS-1123 label (Kubernetes \"Object Names and IDs\": at most "
                           "63 lowercase letters, digits and '-', starting and ending with a letter or digit)")
    return value


def check_dns1123_subdomain(value: str, flag: str) -> str:
    """A service account, a runtime (most object names): a DNS-1123 subdomain, or one line naming the rule."""
    if not isinstance(value, str) or not DNS_1123_SUBDOMAIN.fullmatch(value) or len(value) > 253:
        raise UserError(f"{flag} {_shown(value)} is not a DNS-1123 subdomain (Kubernetes \"Object Names and IDs\": "
                           "at most 253 lowercase letters, digits, '-' and '.', each '.'-separated part starting and "
                           "ending with a letter or digit)")
    return value


def check_dns1035_label(value: str, flag: str, longest: int = 63, why: str = "") -> str:
    """A DNS-1035 label (a letter first) of at most ``longest`` characters, or one line naming the rule."""
    if not isinstance(value, str) or not DNS_1035_LABEL.fullmatch(value) or len(value) > longest:
        raise UserError(f"{flag} {_shown(value)} is not a DNS-1035 label of at most {longest} characters (lowercase "
                           f"letters, digits and '-', starting with a letter, ending with a letter or digit{why})")
    return value
