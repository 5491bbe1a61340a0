"""Signed and private URLs (contract section 4): pure functions, no I/O.

Signed URL (a project with `signing_key`):

    sig = hex HMAC-SHA256(key, "<path>?<query>")

where `<path>` is the request path `/<project>/<file>` and `<query>` is every
parameter but `sig`, sorted by name and joined as `urllib.parse.urlencode`
does. An `exp` parameter (Unix seconds) is signed like any other and ends the
URL's life after that second.

Private token (a project with `private = true`):

    token = "<exp>." + hex HMAC-SHA256(key, "<path>:<exp>")

Keys are the project's `signing_key` list (`Project.signing_key`, a tuple of
secrets): the first one signs, every one of them verifies, so a key can be
rotated by putting the new one first and keeping the old one second until
the URLs signed with it have gone. Private tokens are made and checked with
the same list; there is no separate token key.

Every comparison is constant-time (`hmac.compare_digest`) and is made against
every key, whichever matches, so the time taken tells nothing about which key
signed nor how much of a signature was right.
"""

import base64
import hashlib
import hmac
import re
import time
import urllib.parse

from ..errors import Expired, InvalidParam, InvalidSignature

# Unix seconds: digits only, and few enough that int() is cheap and bounded.
_EXP = re.compile(r"^[0-9]{1,12}$")


def _key_bytes(key):
    return key if isinstance(key, bytes) else key.encode("utf-8")


def _key_list(keys):
    if isinstance(keys, (str, bytes)):
        return [keys]
    return list(keys or ())


def _hmac_hex(key, message):
    return hmac.new(_key_bytes(key), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _as_bytes(value):
    # compare_digest refuses non-ASCII str; bytes compare whatever a client sent.
    return value.encode("utf-8", "surrogatepass")


def _matches_any(keys, message, given):
    """Whether `given` is the HMAC of `message` under one of `keys`, checking every key."""
    given = _as_bytes(given)
    ok = False
    for key in _key_list(keys):
        # No short cut: every key is compared, whichever matches.
        ok |= hmac.compare_digest(_as_bytes(_hmac_hex(key, message)), given)
    return ok


def _items(args):
    """(name, first value) pairs of a plain mapping or a werkzeug MultiDict."""
    return [(name, args[name]) for name in args]


def canonical_query(args):
    """Every parameter except `sig`, sorted by name, joined as `urllib.parse.urlencode` does.

    `args` maps names to values (a MultiDict counts by its first value per name).
    """
    return urllib.parse.urlencode(sorted((k, v) for k, v in _items(args) if k != "sig"))


def _message(path, args):
    return f"{path}?{canonical_query(args)}"


def sign(key, path, args):
    """The lowercase hex HMAC-SHA256 under `key` of "<path>?<canonical query>"."""
    return _hmac_hex(key, _message(path, args))


def signed_url(key, path, args):
    """`path` with its canonical query and `sig`: "/p/a.jpg?exp=...&w=400&sig=..."."""
    query = canonical_query(args)
    sig = sign(key, path, args)
    return f"{path}?{query}&sig={sig}" if query else f"{path}?sig={sig}"


def _now(now):
    return time.time() if now is None else now


def verify(keys, path, args, now=None):
    """Check the `sig` of a public URL; return None or raise.

    `keys` is the project's signing_key list: any one of them may have signed.
    Raises InvalidSignature when `sig` is missing or matches no key, and
    Expired when the URL carries an `exp` (Unix seconds) that is in the past
    (it is valid up to and including that second). The signature is checked
    first, so a forged URL is always InvalidSignature, never Expired.
    A correctly signed but malformed `exp` (not 1-12 digits) raises
    InvalidParam("exp"): the URL was signed wrong, and it is never served
    without a time limit it was meant to have.
    """
    given = args.get("sig")
    if not given:
        raise InvalidSignature()
    if not _matches_any(keys, _message(path, args), given):
        raise InvalidSignature()
    exp = args.get("exp")
    if exp is None:
        return
    if not _EXP.match(exp):
        raise InvalidParam("exp", f"expected Unix seconds (digits only), got {exp[:40]!r}")
    if _now(now) > int(exp):
        raise Expired()


def private_token(key, path, exp):
    """A private project's token for `path` until `exp` (Unix seconds): "<exp>.<hex HMAC>"."""
    exp = str(int(exp))
    return f"{exp}.{_hmac_hex(key, f'{path}:{exp}')}"


def verify_token(keys, path, token, now=None):
    """Check a private project's `token` for `path`; return None or raise.

    `keys` is the project's signing_key list (any one may have made the token).
    A missing, malformed or wrong token raises InvalidSignature; a good one
    whose exp has passed raises Expired (valid up to and including that second).
    """
    if not token:
        raise InvalidSignature("This project is private: the URL needs a token parameter.")
    exp, dot, given = token.partition(".")
    if not dot or not _EXP.match(exp) or not given:
        raise InvalidSignature("The token is not of the form <exp>.<signature>.")
    if not _matches_any(keys, f"{path}:{exp}", given):
        raise InvalidSignature("The token does not match this URL.")
    if _now(now) > int(exp):
        raise Expired("This token has expired (its exp is in the past).")


PATH_SIG_LENGTH = 32


def path_signature(secret, ops, image_url, exp=None):
    """A path-style URL's sig (contract section 11): the first 32 characters of base64url, no
    padding, of HMAC-SHA256 keyed by the key's whole secret, over `<ops>/<imageUrl>[?exp=<exp>]`."""
    message = f"{ops}/{image_url}" + (f"?exp={exp}" if exp is not None else "")
    digest = hmac.new(secret.encode(), message.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:PATH_SIG_LENGTH]
