"""A small stand-in for the Hugging Face Hub API on 127.0.0.1, speaking the HTTP that huggingface_hub uses
to create a repo and commit files (preupload + NDJSON commit, every file "regular", no LFS)."""

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubStandIn:
    def __init__(self):
        self.requests: list[dict] = []  # method, path, headers, body of every request
        self.repos: dict[str, dict[str, bytes]] = {}  # repo id -> path -> content
        self.commits: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, payload, status=200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hub.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
                return body

            def do_GET(self):
                self._record()
                if self.path.startswith("/api/whoami-v2"):
                    return self._reply({"name": "tester", "type": "user", "auth": {"type": "access_token"}})
                match = re.match(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/?]+)?", self.path)
                if match and match.group(1) in hub.repos:
                    files = hub.repos[match.group(1)]
                    return self._reply({"id": match.group(1), "sha": "0" * 40,
                                        "siblings": [{"rfilename": p} for p in files]})
                return self._reply({"error": "not found"}, 404)

            def do_POST(self):
                body = self._record()
                if self.path == "/api/repos/create":
                    data = json.loads(body)
                    repo_id = f"{data.get('organization') or 'tester'}/{data['name']}"
                    hub.repos.setdefault(repo_id, {})
                    return self._reply({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if self.path == "/api/validate-yaml":
                    return self._reply({})
                match = re.match(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)", self.path)
                if not match:
                    return self._reply({"error": f"unknown {self.path}"}, 404)
                repo_id, action = match.group(1), match.group(2)
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                  for f in files]})
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                files = {}
                for line in lines:
                    if line["key"] == "file":
                        files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                hub.repos.setdefault(repo_id, {}).update(files)
                header = next(line["value"] for line in lines if line["key"] == "header")
                hub.commits.append({"repo": repo_id, "summary": header["summary"], "files": sorted(files)})
                oid = f"{len(hub.commits):040x}"
                return self._reply({"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}", "commitOid": oid,
                                    "pullRequestUrl": None})

        return Handler
