#!/usr/bin/env python3
"""A RADIUS client built on pyrad, for okey's end-to-end tests.

Sends one PAP Access-Request (optionally several copies of the very same datagram) and prints
one JSON line per copy: the reply code, its Reply-Message, State, and whether pyrad found the
reply authentic (Response Authenticator, Message-Authenticator, Proxy-State).
"""

import argparse
import json
import os
import socket
import sys
import tempfile

from pyrad import packet
from pyrad.dictionary import Dictionary

DICTIONARY = """
ATTRIBUTE User-Name 1 string
ATTRIBUTE User-Password 2 string
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE NAS-Port 5 integer
ATTRIBUTE Filter-Id 11 string
ATTRIBUTE Reply-Message 18 string
ATTRIBUTE State 24 octets
ATTRIBUTE Class 25 octets
ATTRIBUTE Session-Timeout 27 integer
ATTRIBUTE NAS-Identifier 32 string
ATTRIBUTE Proxy-State 33 octets
ATTRIBUTE Message-Authenticator 80 octets
"""

CODES = {
    packet.AccessAccept: "accept",
    packet.AccessReject: "reject",
    packet.AccessChallenge: "challenge",
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("server")
    p.add_argument("secret")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("--state", default="")
    p.add_argument("--no-message-authenticator", action="store_true")
    p.add_argument("--bad-message-authenticator", action="store_true")
    p.add_argument("--sign-with", default="", help="sign with this secret instead")
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--proxy-state", default="")
    p.add_argument("--timeout", type=float, default=1.0)
    a = p.parse_args()

    with tempfile.NamedTemporaryFile("w", suffix=".dict", delete=False) as f:
        f.write(DICTIONARY)
        dict_path = f.name
    try:
        d = Dictionary(dict_path)
    finally:
        os.unlink(dict_path)

    secret = (a.sign_with or a.secret).encode()
    req = packet.AuthPacket(code=packet.AccessRequest, secret=secret, dict=d)
    req["User-Name"] = a.user
    req["User-Password"] = req.PwCrypt(a.password)
    req["NAS-Identifier"] = "pyrad-test"
    if a.state:
        req["State"] = a.state.encode()
    if a.proxy_state:
        req["Proxy-State"] = a.proxy_state.encode()
    if not a.no_message_authenticator:
        req.add_message_authenticator()
    raw = req.RequestPacket()
    if a.bad_message_authenticator:
        i = 20
        while raw[i] != 80:
            i += raw[i + 1]
        raw = raw[: i + 2] + bytes([raw[i + 2] ^ 1]) + raw[i + 3 :]
    # The reply is checked with the secret the server holds.
    req.secret = a.secret.encode()

    host, port = a.server.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.source, 0))
    s.settimeout(a.timeout)
    for _ in range(a.copies):
        s.sendto(raw, (host, int(port)))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            print(json.dumps({"code": "timeout"}))
            continue
        reply = packet.Packet(packet=data, secret=a.secret.encode(), dict=d)
        out = {
            "code": CODES.get(reply.code, str(reply.code)),
            "authentic": req.VerifyReply(reply, data, enforce_ma=True),
            "message_authenticator_first": data[20] == 80,
            "reply_message": [m for m in reply.get("Reply-Message", [])],
            "state": [x.decode() for x in reply.get("State", [])],
            "class": [x.decode() for x in reply.get("Class", [])],
            "filter_id": reply.get("Filter-Id", []),
            "session_timeout": reply.get("Session-Timeout", []),
            "proxy_state": [x.decode() for x in reply.get("Proxy-State", [])],
            "raw": data.hex(),
        }
        print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
