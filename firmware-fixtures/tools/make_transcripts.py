#!/usr/bin/env python3
"""Builds the request/response transcripts in ../transcripts from the byte layouts of
shared/protocols/hid-tokens.md, with its own CRC and HOTP code (a third implementation, next
to okey-hid's driver and okey-token-sim's firmware). It does not run either of them: the
transcripts are the fact sheet written out, and the conformance test replays them against
both. Where the sheet gives example bytes (CRC vectors, the YubiKey HOTP frame), this script
asserts it reproduces them.

Run: python3 firmware-fixtures/tools/make_transcripts.py   (rewrites the .hex files)
"""

import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "transcripts")


# ---------------------------------------------------------------- checksums (sheet 1.4, 2.3)

def stm_crc(data: bytes) -> int:
    """STM32 CRC: 0x04C11DB7, init 0xFFFFFFFF, 32-bit little-endian words, MSB first."""
    assert len(data) % 4 == 0
    crc = 0xFFFFFFFF
    for i in range(0, len(data), 4):
        crc ^= struct.unpack("<I", data[i:i + 4])[0]
        for _ in range(32):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def yk_crc(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0x8408
    return crc


assert stm_crc(bytes(4)) == 0xC704DD7B
assert stm_crc(bytes(60)) == 0xEF6EB7DF
assert yk_crc(b"123456789") == 0x6F91
assert yk_crc(bytes(64)) == 0x5B6B


def hotp(key: bytes, counter: int, digits: int) -> int:
    h = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    o = h[19] & 0x0F
    return (struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % (10 ** digits)


assert hotp(b"12345678901234567890", 0, 6) == 755224


def hx(b: bytes) -> str:
    return " ".join(f"{x:02x}" for x in b)


# ---------------------------------------------------------------- Nitrokey (sheet part 1)

class Nk:
    """Writes a Nitrokey transcript: requests per 1.3/1.10, responses per 1.5."""

    def __init__(self, name, profile, temp_password, comment):
        self.lines = [f"# {comment}", f"profile {profile}", f"temp-password {temp_password}"]
        self.name = name

    def call(self, text):
        self.lines.append("")
        self.lines.append(f"call {text}")

    def expect(self, text):
        self.lines.append(f"expect {text}")

    @staticmethod
    def request(cmd, fields=()):
        r = bytearray(64)
        r[0] = cmd
        for off, data in fields:
            r[off:off + len(data)] = data
        r[60:64] = struct.pack("<I", stm_crc(bytes(r[:60])))
        return bytes(r)

    def xfer(self, req, status=0, payload=b""):
        """One SET_REPORT and the GET_REPORT answering it (device status 0, ready)."""
        out = bytearray(64)
        out[1] = req[0]
        out[2:6] = struct.pack("<I", stm_crc(req[:60]))
        out[6] = status
        out[7:7 + len(payload)] = payload
        out[60:64] = struct.pack("<I", stm_crc(bytes(out[:60])))
        self.lines.append("> " + hx(req))
        self.lines.append("< " + hx(bytes(out)))

    def save(self):
        path = os.path.join(OUT, "nitrokey", self.name + ".hex")
        with open(path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def pad(b: bytes, n: int) -> bytes:
    assert len(b) <= n
    return b + bytes(n - len(b))


TMP = b"123123123"
TMP25 = pad(TMP, 25)
ADMIN = b"12345678"
USER = b"123456"
RFC = b"12345678901234567890"

GET_STATUS = 0x00
WRITE_TO_SLOT = 0x01
READ_SLOT = 0x03
GET_CODE = 0x04
ERASE_SLOT = 0x06
FIRST_AUTHENTICATE = 0x07
AUTHORIZE = 0x08
GET_PW_RETRY = 0x09
SET_TIME = 0x0B
GET_USER_PW_RETRY = 0x0F
UNLOCK_USER = 0x11
FACTORY_RESET = 0x13
CHANGE_USER = 0x14
CHANGE_ADMIN = 0x15
SEND_OTP_DATA = 0x17


def status_payload(minor, serial, otp_pin=0):
    # P0 minor, P1 major, P2..5 card serial LE, P6..8 lock bindings (none = 0xFF), P9 OTP PIN.
    return bytes([minor, 0]) + struct.pack("<I", serial) + bytes([0xFF, 0xFF, 0xFF, otp_pin, 0])


def slot_payload(name, config, counter):
    # P0..14 name, P15 config, P16..28 token ID, P29..36 counter / step.
    return pad(name, 15) + bytes([config]) + bytes(13) + struct.pack("<Q", counter)


def code_payload(code, config):
    return struct.pack("<I", code) + bytes([config]) + bytes(13)


def first_auth(pin=ADMIN):
    return Nk.request(FIRST_AUTHENTICATE, [(1, pin), (26, TMP25)])


def nk_status_and_retries():
    t = Nk("status", "nk-pro-v0.15", "123123123",
           "GET_STATUS (request CRC from the sheet: DF B7 6E EF) and both retry counters.")
    req = Nk.request(GET_STATUS)
    assert req[60:] == bytes.fromhex("dfb76eef")
    t.call("open")
    t.xfer(req, payload=status_payload(15, 0x00C0FFEE))
    t.expect("firmware=0.15 serial=0x00c0ffee")
    t.call("user_retry_count")
    t.xfer(Nk.request(GET_USER_PW_RETRY), payload=bytes([3]))
    t.expect("count=3")
    t.call("admin_retry_count")
    t.xfer(Nk.request(GET_PW_RETRY), payload=bytes([3]))
    t.expect("count=3")
    t.save()


def nk_hotp_inline():
    t = Nk("hotp-inline", "nk-pro-v0.15", "123123123",
           "Firmware >= 0.8: FIRST_AUTHENTICATE (sheet CRC 0x329E1EF0), SEND_OTP_DATA 'N' and 'S', "
           "WRITE_TO_SLOT, READ_SLOT, GET_CODE (RFC 4226 key, counter advances), ERASE_SLOT.")
    t.call("open")
    t.xfer(Nk.request(GET_STATUS), payload=status_payload(15, 0x00C0FFEE))
    t.expect("firmware=0.15 serial=0x00c0ffee")
    t.call(f"write_slot slot=hotp1 name=mail secret={RFC.hex()} counter=0 digits=6 admin=12345678")
    fa = first_auth()
    assert struct.unpack("<I", fa[60:])[0] == 0x329E1EF0
    t.xfer(fa)
    # 'N' chunk: echo of the 15-byte name; 'S' chunk id 0: echo of the 40-byte staged secret.
    t.xfer(Nk.request(SEND_OTP_DATA, [(1, TMP25), (26, b"N\x00"), (28, b"mail")]), payload=pad(b"mail", 15))
    t.xfer(Nk.request(SEND_OTP_DATA, [(1, TMP25), (26, b"S\x00"), (28, RFC)]), payload=pad(RFC, 40))
    t.xfer(Nk.request(WRITE_TO_SLOT, [(1, TMP25), (26, bytes([0x11])), (27, struct.pack("<Q", 0)),
                                      (35, bytes([0])), (36, bytes(13))]))
    t.call("read_slot slot=hotp1")
    t.xfer(Nk.request(READ_SLOT, [(1, bytes([0x11]))]), payload=slot_payload(b"mail", 0, 0))
    t.expect("name=mail counter=0 digits=6")
    for counter in (0, 1):
        t.call("get_code slot=hotp1")
        t.xfer(Nk.request(GET_STATUS), payload=status_payload(15, 0x00C0FFEE))
        t.xfer(Nk.request(GET_CODE, [(1, bytes([0x11]))]), payload=code_payload(hotp(RFC, counter, 6), 0))
        t.expect(f"code={hotp(RFC, counter, 6):06d}")
    t.call("read_slot slot=hotp1")
    t.xfer(Nk.request(READ_SLOT, [(1, bytes([0x11]))]), payload=slot_payload(b"mail", 0, 2))
    t.expect("name=mail counter=2 digits=6")
    t.call("erase_slot slot=hotp1 admin=12345678")
    t.xfer(first_auth())
    t.xfer(Nk.request(ERASE_SLOT, [(1, bytes([0x11])), (2, TMP25)]))
    t.call("read_slot slot=hotp1")
    t.xfer(Nk.request(READ_SLOT, [(1, bytes([0x11]))]), status=3)
    t.expect("status=3")
    t.save()


def nk_totp_inline():
    secret = bytes(range(1, 41))  # 40-byte secret: two 'S' chunks
    t = Nk("totp-inline", "nk-pro-v0.15", "123123123",
           "TOTP slot with a 40-byte secret (two 'S' chunks), SET_TIME force (sheet CRC 0x10F14A48), "
           "GET_CODE from the device clock, SET_TIME checked refusing to go back (status 6).")
    t.call("open")
    t.xfer(Nk.request(GET_STATUS), payload=status_payload(15, 0x00C0FFEE))
    t.expect("firmware=0.15 serial=0x00c0ffee")
    t.call(f"write_slot slot=totp2 name=vpn secret={secret.hex()} step=30 digits=8 admin=12345678")
    t.xfer(first_auth())
    t.xfer(Nk.request(SEND_OTP_DATA, [(1, TMP25), (26, b"N\x00"), (28, b"vpn")]), payload=pad(b"vpn", 15))
    staged = bytearray(40)
    staged[0:30] = secret[0:30]
    t.xfer(Nk.request(SEND_OTP_DATA, [(1, TMP25), (26, b"S\x00"), (28, secret[0:30])]), payload=bytes(staged))
    staged[30:40] = secret[30:40]
    t.xfer(Nk.request(SEND_OTP_DATA, [(1, TMP25), (26, b"S\x01"), (28, secret[30:40])]), payload=bytes(staged))
    t.xfer(Nk.request(WRITE_TO_SLOT, [(1, TMP25), (26, bytes([0x22])), (27, struct.pack("<Q", 30)),
                                      (35, bytes([1])), (36, bytes(13))]))
    t.call("set_time mode=force time=1700000000")
    st = Nk.request(SET_TIME, [(1, bytes([1])), (2, struct.pack("<Q", 1700000000))])
    assert struct.unpack("<I", st[60:])[0] == 0x10F14A48
    t.xfer(st)
    t.call("get_code slot=totp2")
    t.xfer(Nk.request(GET_STATUS), payload=status_payload(15, 0x00C0FFEE))
    code = hotp(secret, 1700000000 // 30, 8)
    t.xfer(Nk.request(GET_CODE, [(1, bytes([0x22]))]), payload=code_payload(code, 1))
    t.expect(f"code={code:08d}")
    t.call("set_time mode=checked time=1699990000")
    t.xfer(Nk.request(SET_TIME, [(1, bytes([0])), (2, struct.pack("<Q", 1699990000))]), status=6)
    t.expect("status=6")
    t.save()


def nk_legacy():
    t = Nk("hotp-authorize", "nk-pro-v0.7", "123123123",
           "Firmware <= 0.7: every admin command is preceded by FIRST_AUTHENTICATE and AUTHORIZE "
           "carrying the CRC of the command; single-report WRITE_TO_SLOT with a 20-byte secret.")
    t.call("open")
    t.xfer(Nk.request(GET_STATUS), payload=status_payload(7, 0x00070007))
    t.expect("firmware=0.7 serial=0x00070007")
    t.call(f"write_slot slot=hotp0 name=old secret={RFC.hex()} counter=5 digits=6 admin=12345678")
    write = Nk.request(WRITE_TO_SLOT, [(1, bytes([0x10])), (2, b"old"), (17, RFC), (37, bytes([0])),
                                       (38, bytes(13)), (51, struct.pack("<Q", 5))])
    t.xfer(first_auth())
    t.xfer(Nk.request(AUTHORIZE, [(1, write[60:64]), (5, TMP25)]))
    t.xfer(write)
    t.call("get_code slot=hotp0")
    t.xfer(Nk.request(GET_STATUS), payload=status_payload(7, 0x00070007))
    t.xfer(Nk.request(GET_CODE, [(1, bytes([0x10]))]), payload=code_payload(hotp(RFC, 5, 6), 0))
    t.expect(f"code={hotp(RFC, 5, 6):06d}")
    t.call("erase_slot slot=hotp0 admin=12345678")
    erase = Nk.request(ERASE_SLOT, [(1, bytes([0x10]))])
    t.xfer(first_auth())
    t.xfer(Nk.request(AUTHORIZE, [(1, erase[60:64]), (5, TMP25)]))
    t.xfer(erase)
    t.save()


def nk_pins():
    t = Nk("pins", "nk-pro-v0.8", "123123123",
           "PIN commands: wrong old PIN (status 4, one try gone), too-short new PIN (12), change, "
           "unlock, admin change, factory reset with the old admin PIN (4) and the new one.")
    serial = 0x00080008
    t.call("open")
    t.xfer(Nk.request(GET_STATUS), payload=status_payload(8, serial))
    t.expect("firmware=0.8 serial=0x00080008")
    t.call("change_user_pin old=000000 new=654321")
    t.xfer(Nk.request(CHANGE_USER, [(1, b"000000"), (26, b"654321")]), status=4)
    t.expect("status=4")
    t.call("user_retry_count")
    t.xfer(Nk.request(GET_USER_PW_RETRY), payload=bytes([2]))
    t.expect("count=2")
    t.call("change_user_pin old=123456 new=12345")
    t.xfer(Nk.request(CHANGE_USER, [(1, USER), (26, b"12345")]), status=12)
    t.expect("status=12")
    t.call("change_user_pin old=123456 new=654321")
    t.xfer(Nk.request(CHANGE_USER, [(1, USER), (26, b"654321")]))
    t.call("unlock_user_pin admin=12345678 new=112233")
    t.xfer(Nk.request(UNLOCK_USER, [(1, ADMIN), (26, b"112233")]))
    t.call("change_admin_pin old=12345678 new=abcdefgh")
    t.xfer(Nk.request(CHANGE_ADMIN, [(1, ADMIN), (26, b"abcdefgh")]))
    t.call("factory_reset admin=12345678")
    t.xfer(Nk.request(FACTORY_RESET, [(1, ADMIN)]), status=4)
    t.expect("status=4")
    t.call("admin_retry_count")
    t.xfer(Nk.request(GET_PW_RETRY), payload=bytes([2]))
    t.expect("count=2")
    t.call("factory_reset admin=abcdefgh")
    t.xfer(Nk.request(FACTORY_RESET, [(1, b"abcdefgh")]))
    t.call("admin_retry_count")
    t.xfer(Nk.request(GET_PW_RETRY), payload=bytes([3]))
    t.expect("count=3")
    t.save()


# ---------------------------------------------------------------- YubiKey (sheet part 2)

class Yk:
    def __init__(self, name, profile, comment):
        self.lines = [f"# {comment}", f"profile {profile}"]
        self.name = name
        self.version = None
        self.pgm = 0
        self.touch = 0

    def call(self, text):
        self.lines.append("")
        self.lines.append(f"call {text}")

    def expect(self, text):
        self.lines.append(f"expect {text}")

    def status(self, flags=0):
        ma, mi, bu = self.version
        r = bytes([0, ma, mi, bu, self.pgm, self.touch & 0xFF, self.touch >> 8, flags])
        self.lines.append("< " + hx(r))

    def set(self, r):
        assert len(r) == 8
        self.lines.append("> " + hx(r))

    def get(self, r):
        assert len(r) == 8
        self.lines.append("< " + hx(r))

    def frame(self, cmd, payload):
        """Writes a frame (2.4, 2.5): status poll before every chunk, zero chunks skipped."""
        payload = pad(payload, 64)
        frame = payload + bytes([cmd]) + struct.pack("<H", yk_crc(payload)) + bytes(3)
        reports = []
        for seq in range(10):
            chunk = frame[7 * seq:7 * seq + 7]
            if seq not in (0, 9) and chunk == bytes(7):
                continue
            reports.append(chunk + bytes([0x80 | seq]))
        for rep in reports:
            self.status()
            self.set(rep)
        return reports

    def save(self):
        path = os.path.join(OUT, "yubikey", self.name + ".hex")
        with open(path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def yk_config(key20, digits, imf, ext, tkt, cfg, acc=bytes(6)):
    c = bytearray(52)
    c[16:20] = key20[16:20]
    c[20:22] = struct.pack(">H", imf // 16)
    c[22:38] = key20[0:16]
    c[38:44] = acc
    c[45], c[46], c[47] = ext, tkt, cfg | (0x02 if digits == 8 else 0)
    c[50:52] = struct.pack("<H", (~yk_crc(bytes(c[:50]))) & 0xFFFF)
    assert yk_crc(bytes(c)) == 0xF0B8
    return bytes(c)


def yk_serial():
    t = Yk("status-serial", "yubikey-5.4.3", "Status report and serial (0x10): empty-payload frame "
           "(CRC 0x5B6B), response chunk with 0x40, end marker 0x40|0 (the device repeats chunk 0; "
           "the marker's data bytes are [UNCONFIRMED]), reset report 0x8F.")
    t.version = (5, 4, 3)
    t.call("open")
    t.status()
    t.expect("version=5.4.3 pgm_seq=0 touch=0")
    t.call("serial")
    reports = t.frame(0x10, b"")
    assert reports[1] == bytes.fromhex("00106b5b000000") + b"\x89"
    data = struct.pack(">I", 12345678)
    data += struct.pack("<H", (~yk_crc(data)) & 0xFFFF) + b"\x00"
    t.get(data + b"\x40")
    t.get(data + b"\x40")
    t.set(bytes(7) + b"\x8f")
    t.expect("serial=12345678")
    t.save()


def yk_hotp():
    t = Yk("hotp-program", "yubikey-5.4.3", "OATH-HOTP configuration of slot 1 exactly as the sheet's "
           "2.16 vector (RFC 4226 key, IMF 0, 6 digits, ext 0x34, tkt 0x60, cfg 0x40), then with "
           "8 digits, IMF 4096 and an access code in slot 2, a rejected delete (pgmSeq unchanged), "
           "a delete with the code, and a swap.")
    t.version = (5, 4, 3)
    t.call("open")
    t.status()
    t.expect("version=5.4.3 pgm_seq=0 touch=0")
    t.call(f"program_hotp slot=1 secret={RFC.hex()} digits=6 imf=0 ext=0x34 append_cr=1 "
           "id_encoding=modhex2 new_access=000000000000 current_access=000000000000")
    config = yk_config(RFC, 6, 0, 0x34, 0x60, 0x40)
    assert config[50:52] == bytes.fromhex("5fc0")
    reports = t.frame(0x01, config)
    sheet = ["00000000000000 80", "0000373839300082", "0031323334353683", "3738393031323384",
             "3435360000000085", "0000003460400086", "005fc00000000087", "0001955600000089"]
    assert reports == [bytes.fromhex(s.replace(" ", "")) for s in sheet]
    t.pgm, t.touch = 1, 0x01
    t.status()
    t.call("status")
    t.status()
    t.expect("version=5.4.3 pgm_seq=1 touch=1")
    key = bytes(range(0xA0, 0xB4))
    acc = bytes.fromhex("010203040506")
    t.call(f"program_hotp slot=2 secret={key.hex()} digits=8 imf=4096 ext=0x24 append_cr=0 "
           f"id_encoding=none new_access={acc.hex()} current_access=000000000000")
    t.frame(0x03, yk_config(key, 8, 4096, 0x24, 0x40, 0x00, acc))
    t.pgm, t.touch = 2, 0x03
    t.status()
    t.call("delete_slot slot=2 current_access=000000000000")
    t.frame(0x03, bytes(52) + bytes(6))
    t.status()
    t.expect("error=rejected")
    t.call(f"delete_slot slot=2 current_access={acc.hex()}")
    t.frame(0x03, bytes(52) + acc)
    t.pgm, t.touch = 3, 0x01
    t.status()
    t.call("swap")
    t.frame(0x06, b"")
    t.pgm, t.touch = 4, 0x02
    t.status()
    t.save()


if __name__ == "__main__":
    os.makedirs(os.path.join(OUT, "nitrokey"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "yubikey"), exist_ok=True)
    nk_status_and_retries()
    nk_hotp_inline()
    nk_totp_inline()
    nk_legacy()
    nk_pins()
    yk_serial()
    yk_hotp()
    print("transcripts written to", os.path.normpath(OUT))
