"""Upload an inventory ML-BOM to OWASP Dependency-Track (`export --format cyclonedx --upload`).

The REST API, as Dependency-Track 4.11 through 4.13 define it (`BomResource`, `EventResource`;
no server runs in the test suite, a loopback stand-in checks the request shape):
- `PUT {base}/api/v1/bom`, `Content-Type: application/json`, header `X-Api-Key`, body
  `{"projectName", "projectVersion", "autoCreate": true, "bom": <base64 of the JSON BOM>}`
  (the key needs BOM_UPLOAD, and PROJECT_CREATION_UPLOAD for autoCreate). 200 answers
  `{"token": <uuid>}`; 400 is a BOM the server's schema validation refused (since 4.11).
- `GET {base}/api/v1/event/token/{token}` answers `{"processing": bool}` (since 4.11) until
  the BOM is processed; polled here at most `wait_s` seconds.
Dependency-Track replaces a project's components with each upload's, so the BOM is the whole
set of models in use (`sbom.to_inventory`), never one load.

Secrets: the API key is read from the environment (`API_KEY_ENV`) by the caller and sent only
in the header; it is never part of a message (the server's answers are cut and scrubbed of it)
and redirects are refused, so it never follows a `Location` to another host. Stdlib only.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from safeload._internal.text import safe_text
from safeload.errors import ExportError

API_KEY_ENV = "SAFELOAD_DTRACK_API_KEY"
BOM_PATH = "/api/v1/bom"
TOKEN_PATH = "/api/v1/event/token/"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_FIX = "check the URL (the server's base, or its /api/v1/bom) and the API key's permissions"


@dataclass(frozen=True)
class UploadResult:
    url: str  # the BOM endpoint, without credentials
    project: str
    version: str
    token: str
    processed: bool  # the server said it is done within the wait
    waited_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "project": self.project, "version": self.version,
                "token": self.token, "processed": self.processed,
                "waited_s": round(self.waited_s, 3)}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        raise urllib.error.HTTPError(req.full_url, code, "redirect refused (the API key would "
                                     "follow it)", headers, fp)


def endpoint(url: str) -> tuple[str, str]:
    """(base URL, BOM endpoint) of `url`: the server's base URL or its `/api/v1/bom`.

    Raises:
        ExportError: not an http(s) URL, or it carries credentials.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExportError(f"not an http(s) URL: {safe_text(_public(url))}", hint=_FIX)
    if parts.username or parts.password:
        raise ExportError("the Dependency-Track URL must not carry credentials",
                          hint=f"put the API key in ${API_KEY_ENV}")
    path = parts.path.rstrip("/")
    path = path[: -len(BOM_PATH)] if path.endswith(BOM_PATH) else path
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return base, base + BOM_PATH


def _public(url: str) -> str:
    """`url` without userinfo, query or fragment (what a message may show)."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        netloc = host + (f":{p.port}" if p.port else "")
        return urlunsplit((p.scheme, netloc, p.path, "", ""))
    except ValueError:
        return "<unparseable URL>"


Opener = Callable[[urllib.request.Request, float], Any]


def _default_opener() -> Opener:
    opener = urllib.request.build_opener(_NoRedirect)
    return lambda req, timeout: opener.open(req, timeout=timeout)


def _call(opener: Opener, req: urllib.request.Request, api_key: str, timeout: float,
          what: str) -> Mapping[str, Any]:
    def clean(text: str) -> str:
        return safe_text(text.replace(api_key, "<redacted>")[:300]) if api_key else safe_text(
            text[:300])

    try:
        with opener(req, timeout) as resp:
            raw = resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            detail = exc.read(4096).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - the status is the message; the body is a bonus
            pass
        raise ExportError(f"{what}: HTTP {exc.code} from {_public(req.full_url)}"
                          + (f": {clean(detail)}" if detail.strip() else ""), hint=_FIX) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExportError(f"{what}: cannot reach {_public(req.full_url)}: "
                          f"{clean(str(reason))}", hint=_FIX) from None
    try:
        obj = json.loads(raw)
    except ValueError:
        raise ExportError(f"{what}: {_public(req.full_url)} did not answer JSON", hint=_FIX
                          ) from None
    if not isinstance(obj, Mapping):
        raise ExportError(f"{what}: {_public(req.full_url)} did not answer a JSON object",
                          hint=_FIX)
    return obj


def upload(url: str, bom: Mapping[str, Any], *, project: str, version: str, api_key: str,
           auto_create: bool = True, wait_s: float = 60.0, poll_s: float = 1.0,
           timeout_s: float = 30.0, opener: Opener | None = None) -> UploadResult:
    """PUT `bom` for `project`/`version`, then poll its token until processed or `wait_s`.

    Raises:
        ExportError: the server cannot be reached, refuses (401/403/404, 400: an invalid BOM),
            or answers something that is not the API's.
    """
    if not api_key:
        raise ExportError(f"no Dependency-Track API key: set ${API_KEY_ENV}",
                          hint="create one under Administration > Access Management > Teams "
                               "(permissions BOM_UPLOAD, PROJECT_CREATION_UPLOAD)")
    base, bom_url = endpoint(url)
    open_ = opener or _default_opener()
    payload = {"projectName": project, "projectVersion": version, "autoCreate": auto_create,
               "bom": base64.b64encode(json.dumps(bom).encode("utf-8")).decode("ascii")}
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "X-Api-Key": api_key, "User-Agent": "safeload"}
    req = urllib.request.Request(bom_url, data=json.dumps(payload).encode("utf-8"),
                                 headers=headers, method="PUT")
    answer = _call(open_, req, api_key, timeout_s, "BOM upload")
    token = answer.get("token")
    if not isinstance(token, str) or not _UUID.fullmatch(token):
        raise ExportError(f"BOM upload: {_public(bom_url)} answered no processing token",
                          hint=_FIX)
    start = time.monotonic()
    processed = False
    while True:
        poll = urllib.request.Request(base + TOKEN_PATH + quote(token), headers={
            k: v for k, v in headers.items() if k != "Content-Type"}, method="GET")
        status = _call(open_, poll, api_key, timeout_s, "BOM processing status")
        if status.get("processing") is False:
            processed = True
            break
        if time.monotonic() - start + poll_s > wait_s:
            break
        time.sleep(poll_s)
    return UploadResult(_public(bom_url), project, version, token, processed,
                        time.monotonic() - start)


__all__ = ["API_KEY_ENV", "BOM_PATH", "TOKEN_PATH", "UploadResult", "endpoint", "upload"]
