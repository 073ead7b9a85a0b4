#!/usr/bin/env python3
"""Mints the tokens ProductTokenTests present to Tally, with PyJWT (an implementation nobody here wrote).

Usage: mint-product-tokens.py FOLDER
Writes FOLDER/jwks.json (key "a" only), FOLDER/jwks-rotated.json (keys "a" and "b"), FOLDER/secret (an HS256
secret), and FOLDER/tokens.json: the named tokens.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

folder = sys.argv[1]
now = int(time.time())
a = rsa.generate_private_key(public_exponent=65537, key_size=2048)
b = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key, kid):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return jwk


json.dump({"keys": [public_jwk(a, "a")]}, open(os.path.join(folder, "jwks.json"), "w"))
json.dump({"keys": [public_jwk(a, "a"), public_jwk(b, "b")]}, open(os.path.join(folder, "jwks-rotated.json"), "w"))
secret = base64.urlsafe_b64encode(os.urandom(32)).decode()
open(os.path.join(folder, "secret"), "w").write(secret + "\n")


def claims(**changes):
    base = {"sub": "cus_ada", "iss": "https://auth.example.com", "aud": ["tally", "other"], "exp": now + 300, "iat": now}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs(payload, key=a, kid="a"):
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


valid = rs(claims())
header, payload, signature = valid.split(".")
# HS256 "signed" with key a's public key as the secret: the confusion a verifier must not fall for.
public_pem = a.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
confused_head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "a"}).encode())
confused_body = b64(json.dumps(claims()).encode())
confused_sig = b64(hmac.new(public_pem, f"{confused_head}.{confused_body}".encode(), hashlib.sha256).digest())

tokens = {
    "valid": valid,
    "team": rs(claims(sub="cus_team")),
    "unknown": rs(claims(sub="nobody")),
    "expired": rs(claims(exp=now - 300)),
    "early": rs(claims(nbf=now + 600)),
    "wrong_issuer": rs(claims(iss="https://evil.example.com")),
    "wrong_audience": rs(claims(aud="someone-else")),
    "no_expiry": rs(claims(exp=None)),
    "tampered": f"{header}.{b64(json.dumps(claims(sub='cus_grace')).encode())}.{signature}",
    "none": jwt.encode(claims(), None, algorithm="none"),
    "confused": f"{confused_head}.{confused_body}.{confused_sig}",
    "rotated": rs(claims(), key=b, kid="b"),
    "hs_valid": jwt.encode(claims(), secret, algorithm="HS256"),
    "hs_wrong": jwt.encode(claims(), base64.urlsafe_b64encode(os.urandom(32)).decode(), algorithm="HS256"),
}
json.dump(tokens, open(os.path.join(folder, "tokens.json"), "w"))
