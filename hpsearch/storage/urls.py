"""Storage URLs as messages show them: passwords hidden, relative SQLite paths made absolute;
and a password read from a secret file.

Nothing here opens a database; :mod:`hpsearch.storage.opening` does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
import re
from urllib.parse import unquote

from sqlalchemy.engine import make_url

from hpsearch.errors import ConfigError
from hpsearch.spec.defaults import PASSWORD_FILE_ENV

_log = logging.getLogger(__name__)

JOURNAL_PREFIX = "journal:"

# Query parameters that carry a secret in the URL forms SQLAlchemy and libpq accept.
_SECRET_PARAMS = re.compile(
    r"(?i)([?&](?:password|passwd|pwd|sslpassword|secret|token|api_?key|access_?key)=)([^&#]*)"
)


def _userinfo_password(url: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host`` lies; it may itself hold ``@``
    or ``:`` (unquoted), so the host starts after the last ``@`` before the query."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    query = url.find("?", start)
    at = url.rfind("@", start, query if query >= 0 else len(url))
    if at < 0:  # a '?' in the password itself (unquoted): the last '@' ends the user part
        at = url.rfind("@", start)  # (one in the query too hides more, never less)
    colon = url.find(":", start, at)
    if at < 0 or colon < 0 or colon + 1 == at:
        return None
    return colon + 1, at


def secrets_in(url: str) -> list[str]:
    """The secret parts of a storage URL: its password and password-like query values."""
    found = []
    span = _userinfo_password(url)
    if span is not None:
        found.append(url[span[0] : span[1]])
    found += [m.group(2) for m in _SECRET_PARAMS.finditer(url) if m.group(2)]
    return found


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with every secret of ``url`` replaced by ``***``."""
    for secret in sorted(secrets_in(url), key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            text = text.replace(form, "***")
    return text


def redact(url: str) -> str:
    """The URL as messages show it: every password replaced by ``***``, and a relative SQLite
    path made absolute, so that a user sees which file a relative URL opened."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    path = sqlite_path(url)
    if path is not None:
        _, sep, query = url.partition("?")
        url = f"sqlite:///{path}{sep}{query}"
    span = _userinfo_password(url)
    if span is not None:
        url = f"{url[: span[0]]}***{url[span[1] :]}"
    return _SECRET_PARAMS.sub(r"\1***", url)


def sqlite_path(url: str) -> Path | None:
    """The absolute path of a SQLite URL's file; ``None`` for other URLs and in-memory ones."""
    try:
        parsed = make_url(url)
    except Exception as e:  # not a URL at all: open_storage says so, here it is no file
        _log.debug("not a database URL: %s", e)
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def with_password_file(url: str) -> str:
    """``url`` with the password in ``$HPSEARCH_STORAGE_PASSWORD_FILE`` when that is set and
    the URL names a user but no password.

    How a container gets its database password: from a secret file (Docker's or Kubernetes'
    secrets), never from its environment, which ``docker inspect`` shows to anyone who can
    reach the engine. The file holds the password alone; its trailing newline is dropped, as
    the official PostgreSQL image drops it from ``POSTGRES_PASSWORD_FILE``.

    Raises:
        ConfigError: The file cannot be read, or is empty.
    """
    path = os.environ.get(PASSWORD_FILE_ENV)
    if not path or url.startswith(JOURNAL_PREFIX):
        return url
    try:
        parsed = make_url(url)
    except Exception as e:  # not a database URL: check_url says so
        _log.debug("not a database URL: %s", e)
        return url
    if parsed.username is None or parsed.password is not None:  # a URL's own password wins
        return url
    try:
        password = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not text"
        raise ConfigError([f"${PASSWORD_FILE_ENV} {path}: {why}"]) from e
    if not password:
        raise ConfigError([f"${PASSWORD_FILE_ENV} {path}: empty"])
    return parsed.set(password=password).render_as_string(hide_password=False)
