"""A minimal OpenID Connect provider on loopback for the portal's sign-in tests: discovery, an
authorization endpoint that signs the configured user in at once, a token endpoint that insists on PKCE
(S256) and the client's secret, and its JWKS. ID tokens are ES256, signed with joserfc."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

CLIENT_ID = "ackhub-portal"
CLIENT_SECRET = "portal-test-secret"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str


@dataclass
class Provider:
    """`claims` are the signed-in user's (e.g. {"sub": "li.wei", "uscc": ...})."""

    claims: dict[str, Any]
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", parameters={"kid": "op-1"}))
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    url: str = ""

    def start(self) -> str:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif parts.path == "/jwks":
                    self._json(200, KeySet([provider.key]).as_dict(private=False))
                elif parts.path == "/authorize":
                    location = provider.authorize(query)
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                provider.token_requests.append(form)
                status, answer = provider.token(form)
                self._json(status, answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The user is signed in at once; back to the client with a code (or an error)."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return f"{redirect}?" + urlencode({"error": "invalid_request", "state": query.get("state", "")})
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(CLIENT_ID, redirect, query["code_challenge"], query.get("nonce", ""))
        return f"{redirect}?" + urlencode({"code": code, "state": query.get("state", "")})

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = self.grants.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **self.claims,
        }
        id_token = jwt.encode({"alg": "ES256", "kid": "op-1"}, claims, self.key)
        return 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "id_token": id_token}
