#!/usr/bin/env python3
"""Write or inspect GnuTLS SRP password-file entries (tpasswd) for the interop tests.

  srp_tpasswd.py make USER PASSWORD SALT_HEX CONF INDEX OUT
      one entry for USER with the RFC 5054 verifier v = g^x mod N,
      x = SHA1(salt | SHA1(USER ":" PASSWORD)) over the salt bytes exactly as
      given (leading zero bytes included), group INDEX of CONF (made by
      `srptool --create-conf`).  srptool cannot be given a salt; the tests need
      chosen ones (a leading zero byte, or none).
  srp_tpasswd.py salt0 FILE
      the first byte of the salt of FILE's first entry, as two hex digits.

Numbers in these files are written big-endian in GnuTLS's "SRP base64"
alphabet (one 6-bit digit per character, most significant first); a leading
group of 1 or 2 characters decodes to one byte, of 3 to two, so the byte
length (and a salt's leading zero bytes) is carried by the text length.
"""
import hashlib
import sys

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz./"


def to_int(text):
    v = 0
    for ch in text:
        v = v * 64 + ALPHABET.index(ch)
    return v


def to_text(value, nbytes):
    nchars = (nbytes * 8 + 5) // 6
    out = []
    for _ in range(nchars):
        out.append(ALPHABET[value % 64])
        value //= 64
    return "".join(reversed(out))


def group(conf, index):
    with open(conf) as f:
        for line in f:
            parts = line.strip().split(":")
            if parts[0] == str(index):
                return to_int(parts[1]), to_int(parts[2])
    sys.exit("no group %s in %s" % (index, conf))


def make(user, password, salt_hex, conf, index, out):
    n, g = group(conf, index)
    salt = bytes.fromhex(salt_hex)
    inner = hashlib.sha1((user + ":" + password).encode()).digest()
    x = int.from_bytes(hashlib.sha1(salt + inner).digest(), "big")
    v = pow(g, x, n)
    nbytes = (n.bit_length() + 7) // 8
    with open(out, "w") as f:
        f.write("%s:%s:%s:%s\n" % (user, to_text(v, nbytes), to_text(int.from_bytes(salt, "big"), len(salt)), index))


def salt0(path):
    with open(path) as f:
        fields = f.readline().strip().split(":")
    text = fields[2]
    # GnuTLS decodes a leading group of 1 or 2 characters to one byte, of 3 to two.
    nbytes = len(text) // 4 * 3 + (0, 1, 1, 2)[len(text) % 4]
    print("%02x" % to_int(text).to_bytes(nbytes, "big")[0])


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7])
    elif len(sys.argv) == 3 and sys.argv[1] == "salt0":
        salt0(sys.argv[2])
    else:
        sys.exit(__doc__)
