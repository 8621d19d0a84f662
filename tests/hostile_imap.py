"""An IMAP server on loopback that answers as a hostile mailbox owner chooses (implicit TLS).

It speaks just enough IMAP4rev1 for the client in ``wagtail_own_smtp.mailbox`` (greeting,
AUTHENTICATE PLAIN or XOAUTH2, CAPABILITY, SELECT/EXAMINE, UID SEARCH/FETCH/STORE/MOVE, LOGOUT)
and can drip its greeting, announce a message smaller than the literal it sends, send a literal
without end, or number its messages anew (UIDVALIDITY). It records every command it received,
and the tokens of XOAUTH2 logins.
"""

import base64
import json
import re
import socket
import ssl
import threading
import time


class HostileImap:
    def __init__(
        self,
        certificates,
        messages=(),
        *,
        uidvalidity=7,
        drip_greeting=False,
        lie_about_size=(),
        endless_literal=(),
        flood_untagged=False,
        accepts_bearer=None,
        echo_refused_token=False,
    ):
        self.certificates = certificates
        self.messages = dict(messages)  # uid -> raw bytes
        self.uidvalidity = uidvalidity
        self.drip_greeting = drip_greeting
        self.lie_about_size = set(lie_about_size)  # uids announced as 100 bytes
        self.endless_literal = set(endless_literal)  # uids whose literal never ends
        self.flood_untagged = flood_untagged
        # accepts_bearer(user, token) -> bool: AUTH=XOAUTH2 offered instead of PLAIN
        self.accepts_bearer = accepts_bearer
        self.xoauth2_logins = []  # (user, token, accepted)
        self.echo_refused_token = echo_refused_token  # quoted back in the NO
        self.commands = []
        self.flags = {}  # uid -> flags stored
        self.moved = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopping = True
        self._thread.join(5)
        self._listener.close()

    def _serve(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates["cert"], self.certificates["key"])
        self._listener.settimeout(0.1)  # so that __exit__ is not kept waiting
        while not self._stopping:
            try:
                raw, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)
            threading.Thread(target=self._session, args=(raw, context), daemon=True).start()

    def _session(self, raw, context):
        try:
            with context.wrap_socket(raw, server_side=True) as sock:
                self._talk(sock, sock.makefile("rb"))
        except (OSError, ssl.SSLError, ValueError):
            pass

    def _send(self, sock, data):
        sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _talk(self, sock, reader):
        greeting = f"* OK [CAPABILITY IMAP4rev1 {self._auth}] hostile ready\r\n".encode()
        if self.drip_greeting:
            for byte in greeting * 100:
                if self._stopping:
                    return
                self._send(sock, bytes([byte]))
                time.sleep(0.5)
        self._send(sock, greeting)
        while not self._stopping:
            line = reader.readline()
            if not line:
                return
            tag, _space, command = line.decode().rstrip("\r\n").partition(" ")
            self.commands.append(command)
            self._answer(sock, reader, tag, command)

    @property
    def _auth(self):
        return "AUTH=PLAIN" if self.accepts_bearer is None else "AUTH=XOAUTH2"

    def _answer(self, sock, reader, tag, command):
        verb = command.split(" ")[0].upper()
        if verb == "AUTHENTICATE" and self.accepts_bearer is not None:
            self._xoauth2(sock, reader, tag, command)
        elif verb == "AUTHENTICATE":
            self._send(sock, "+ \r\n")
            reader.readline()
            self._send(sock, f"{tag} OK logged in\r\n")
        elif verb == "CAPABILITY":
            self._send(
                sock, f"* CAPABILITY IMAP4rev1 {self._auth} MOVE UIDPLUS\r\n{tag} OK done\r\n"
            )
        elif verb in ("SELECT", "EXAMINE"):
            if self.flood_untagged:
                while not self._stopping:
                    self._send(sock, "* OK " + "x" * 1000 + "\r\n")
            self._send(
                sock,
                f"* {len(self.messages)} EXISTS\r\n* OK [UIDVALIDITY {self.uidvalidity}] ok\r\n"
                f"{tag} OK [READ-WRITE] selected\r\n",
            )
        elif verb == "UID":
            self._uid(sock, tag, command)
        elif verb == "LOGOUT":
            self._send(sock, f"* BYE bye\r\n{tag} OK done\r\n")
        else:
            self._send(sock, f"{tag} BAD unknown\r\n")

    def _xoauth2(self, sock, reader, tag, command):
        """As Exchange Online and Gmail: a refused token gets a challenge with a JSON error,
        the client answers with an empty line, then NO."""
        if command.split(" ")[1:] != ["XOAUTH2"]:
            self._send(sock, f"{tag} NO [AUTHENTICATIONFAILED] mechanism not offered\r\n")
            return
        self._send(sock, "+ \r\n")
        fields = base64.b64decode(reader.readline().strip()).decode().split("\x01")
        values = dict(field.partition("=")[::2] for field in fields if field)
        user, token = values.get("user", ""), values.get("auth", "").removeprefix("Bearer ")
        accepted = bool(user) and self.accepts_bearer(user, token)
        self.xoauth2_logins.append((user, token, accepted))
        if accepted:
            self._send(sock, f"{tag} OK logged in\r\n")
            return
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "imap"})
        self._send(sock, f"+ {base64.b64encode(error.encode()).decode()}\r\n")
        reader.readline()  # the client's empty line
        echo = f" ({token})" if self.echo_refused_token else ""
        self._send(sock, f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials{echo}\r\n")

    def _uid(self, sock, tag, command):
        _uid, sub, rest = command.split(" ", 2)
        sub = sub.upper()
        if sub == "SEARCH":
            low = int(re.search(r"UID (\d+):", rest).group(1))
            found = [str(uid) for uid in sorted(self.messages) if uid >= low] or [
                str(max(self.messages, default=0))
            ]
            self._send(sock, f"* SEARCH {' '.join(found)}\r\n{tag} OK done\r\n")
            return
        uid = int(rest.split(" ")[0])
        if sub == "FETCH" and "RFC822.SIZE" in rest:
            size = 100 if uid in self.lie_about_size else len(self.messages[uid])
            self._send(sock, f"* {uid} FETCH (UID {uid} RFC822.SIZE {size})\r\n{tag} OK done\r\n")
        elif sub == "FETCH":
            body = self.messages[uid]
            if uid in self.endless_literal:
                self._send(sock, f"* {uid} FETCH (UID {uid} BODY[] {{1000}}\r\n")
                while not self._stopping:
                    self._send(sock, b"x")
                    time.sleep(0.2)
                return
            self._send(sock, f"* {uid} FETCH (UID {uid} BODY[] {{{len(body)}}}\r\n".encode())
            self._send(sock, body)  # not joined to the rest: a copy of 50 MB would count too
            self._send(sock, f")\r\n{tag} OK done\r\n")
        elif sub == "STORE":
            self.flags[uid] = rest
            self._send(sock, f"{tag} OK stored\r\n")
        elif sub == "MOVE":
            self.moved.append(uid)
            self._send(sock, f"{tag} OK moved\r\n")
        else:
            self._send(sock, f"{tag} OK done\r\n")
