"""Connection URLs fit for logs and error messages: every password taken out.

One rule for every engine riskscore connects to (PostgreSQL, Redis): the password of the
``user:password@`` part and the ``password`` / ``sslpassword`` query parameters (libpq
reads both) are replaced by ``***``; everything else stays, so the message still says
which server was meant.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redact(url: str) -> str:
    """The URL with any password replaced.

    >>> redact("postgresql://audit:s3cret@db.example:5432/riskscore")
    'postgresql://audit:***@db.example:5432/riskscore'
    >>> redact("postgresql://audit@db:5432/rs?password=s3cret&sslmode=require")
    'postgresql://audit@db:5432/rs?password=***&sslmode=require'
    >>> redact("redis://:s3cret@127.0.0.1:6379/0")
    'redis://:***@127.0.0.1:6379/0'
    >>> redact("rediss+cluster://app:s3cret@r1:7000,r2:7000")
    'rediss+cluster://app:***@r1:7000,r2:7000'
    >>> redact("postgresql:///riskscore?host=/run/postgresql")
    'postgresql:///riskscore?host=/run/postgresql'
    >>> redact("postgresql:///riskscore?password=s3cret")
    'postgresql:///riskscore?password=***'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
        hosts = parts.netloc.rpartition("@")[2]
        if "," not in hosts:  # one host (a cluster URL names several: no one port)
            parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:  # not a URL we can take apart: show none of it
        return "(a malformed URL)"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    secret_parameter = any(key in _SECRET_PARAMETERS for key, _ in pairs)
    if password is None and not secret_parameter:
        return url  # as given: urlunsplit would drop an empty host's "//"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{hosts}"
    if secret_parameter:
        query = urlencode(
            [(k, "***" if k in _SECRET_PARAMETERS else v) for k, v in pairs], safe="*/"
        )
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if not netloc and "://" in url:  # no host (a local socket): keep the "//"
        rebuilt = rebuilt.replace(":", "://", 1)
    return rebuilt


def without_secrets(text: str, url: str) -> str:
    """``text`` (say, a driver's error message) with the URL's passwords blanked out, in
    case the driver echoed them back.

    >>> without_secrets("bad password s3cret", "postgresql://a:s3cret@db/rs")
    'bad password ***'
    """
    secrets: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.append(parts.password)
        secrets += [v for k, v in parse_qsl(parts.query) if k in _SECRET_PARAMETERS and v]
    except ValueError:
        secrets.append(url)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
