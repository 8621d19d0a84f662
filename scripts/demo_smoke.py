"""Smoke test of the demo, non-interactive: what `make demo` does, on a temporary folder.

It runs `demo_setup` twice (the second run must change nothing), starts `demo_run` on free ports,
checks the admin login page and the inbox over HTTP, sends a message through the demo's own
server (STARTTLS + AUTH) and finds it in the inbox, submits the survey form and finds its
notification (sent by the app through the platform's mail service) in the inbox, then stops
the demo with SIGINT and checks that every process is gone.

    python scripts/demo_smoke.py        (with the project's virtualenv)
"""

import http.cookiejar
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(ROOT / "example_project" / "manage.py")]
TIMEOUT = 120
STARTED = time.monotonic()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port):
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition, what, process):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            raise SystemExit(f"demo_run ended (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.3)


class Browser:
    def __init__(self, base):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.status, response.read().decode()

    def post_form(self, path, fields):
        status, page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers={"Referer": self.base}
        )
        with self.opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")
    print(f"ok ({time.monotonic() - STARTED:.0f}s): {message}", flush=True)


def main():
    var = Path(tempfile.mkdtemp(prefix="survey-demo-"))
    ports = {name: free_port() for name in ("http", "own", "platform", "identity", "dns")}
    os.environ.update(
        SURVEY_DEMO_VAR=str(var),
        SURVEY_DEMO_HTTP_PORT=str(ports["http"]),
        SURVEY_DEMO_OWN_SMTP_PORT=str(ports["own"]),
        SURVEY_DEMO_PLATFORM_SMTP_PORT=str(ports["platform"]),
        SURVEY_DEMO_IDENTITY_PORT=str(ports["identity"]),
        SURVEY_DEMO_DNS_PORT=str(ports["dns"]),
    )
    first = subprocess.run([*MANAGE, "demo_setup"], check=True, capture_output=True, text=True)
    check("admin / admin-password" in first.stdout, "demo_setup creates the superuser")
    again = subprocess.run([*MANAGE, "demo_setup"], check=True, capture_output=True, text=True)
    check("Created" not in again.stdout, "demo_setup run again changes nothing")

    log = open(var / "demo_run.log", "w+")  # noqa: SIM115 (read back on failure)
    demo = subprocess.Popen(
        [*MANAGE, "demo_run"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for(
            lambda: "Ctrl-C stops the demo" in (var / "demo_run.log").read_text(), "the demo", demo
        )
        browser = Browser(f"http://127.0.0.1:{ports['http']}")
        check(browser.get("/admin/login/")[0] == 200, "the admin login page answers")
        status, page = browser.get("/demo-inbox/")
        check(status == 200 and "No mail yet" in page, "the demo inbox answers, empty")

        subject = f"Smoke {uuid.uuid4().hex[:8]}"
        message = EmailMessage()
        message["From"] = "demo@survey.example"
        message["To"] = "someone@participants.example"
        message["Subject"] = subject
        message.set_content("Please open http://localhost/own-smtp/verify/example/ now.")
        context = ssl.create_default_context(cafile=str(var / "certs" / "ca.pem"))
        with smtplib.SMTP("localhost", ports["own"], timeout=10) as smtp:
            smtp.starttls(context=context)
            smtp.login("demo@survey.example", "demo-password")
            smtp.send_message(message)
        status, page = browser.get("/demo-inbox/")
        check(
            subject in page and "Own server" in page,
            "a message sent with STARTTLS + AUTH is listed",
        )
        # OAuth: a token from the sign-in stand-in (the demo's app registration) opens AUTH XOAUTH2.
        token = json.load(
            urllib.request.urlopen(
                f"http://127.0.0.1:{ports['identity']}/survey-demo.example/oauth2/v2.0/token",
                urllib.parse.urlencode(
                    {
                        "grant_type": "client_credentials",
                        "client_id": "demo-app-registration",
                        "client_secret": "demo-client-secret",
                        "scope": "https://outlook.office365.com/.default",
                    }
                ).encode(),
                timeout=10,
            )
        )["access_token"]
        oauth_subject = f"OAuth smoke {uuid.uuid4().hex[:8]}"
        message.replace_header("Subject", oauth_subject)
        with smtplib.SMTP("localhost", ports["own"], timeout=10) as smtp:
            smtp.starttls(context=context)
            smtp.ehlo()
            xoauth2 = f"user=demo@survey.example\x01auth=Bearer {token}\x01\x01"
            smtp.auth("XOAUTH2", lambda challenge=None: xoauth2, initial_response_ok=True)
            smtp.send_message(message)
        status, page = browser.get("/demo-inbox/")
        check(oauth_subject in page, "a message sent with AUTH XOAUTH2 (token from the stand-in)")

        detail = re.search(r'href="(/demo-inbox/own/[^"]+/)"', page).group(1)
        status, page = browser.get(detail)
        check('href="http://localhost/own-smtp/verify/example/"' in page, "its link is clickable")

        status, page = browser.post_form(
            "/customer-survey/",
            {
                "your_email_address": "visitor@participants.example",
                "how_satisfied_are_you_with_our_service": "Very",
            },
        )
        check(status == 200 and "Thank you" in page, "the survey form accepts an answer")
        wait_for(
            lambda: "New survey response" in browser.get("/demo-inbox/")[1],
            "the notification",
            demo,
        )
        check(
            "Platform mail" in browser.get("/demo-inbox/")[1],
            "the form notification went through the platform's mail service",
        )
    except BaseException:
        log.seek(0)
        print(log.read(), file=sys.stderr)
        raise
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGINT)
        try:
            code = demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            raise SystemExit("FAILED: demo_run did not stop on Ctrl-C") from None
        log.close()
    check(code == 0, "demo_run stops cleanly on Ctrl-C")
    check(not any(answers(port) for port in ports.values()), "nothing of the demo keeps running")
    shutil.rmtree(var)


if __name__ == "__main__":
    main()
