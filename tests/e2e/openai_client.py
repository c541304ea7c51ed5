#!/usr/bin/env python3
"""openai_client.py - the official `openai` Python client (PyPI) against ditserve's POST /v1/images/generations.

    python3 tests/e2e/openai_client.py --base-url http://127.0.0.1:PORT/v1 --api-key KEY [--model dit]

The server must serve the tiny DiT checkpoint (tests/data/ckpt/dit-tiny) as --model and run with
--api-key KEY. Checks: a wrong key is refused (openai.AuthenticationError, 401); a DiT image asked for by
ImageNet class name ("goldfish") with response_format b64_json decodes as a PNG of the asked size, n images
come back, the same seed gives the same pixels; response_format url gives URLs under /v1/images/ that are
fetchable with the key (and refused without it); ditserve's extras travel in extra_body; an unknown class
name is a 400 (openai.BadRequestError) naming the field. Exit 0 when all pass, 1 otherwise.
"""
import argparse
import base64
import struct
import sys
import urllib.error
import urllib.request
import zlib

import openai

failures = 0


def ok(msg):
    print("ok   " + msg)


def bad(msg):
    global failures
    failures += 1
    print("FAIL " + msg)


def png_info(b):
    """Walk the PNG chunks (CRC-checked), inflate IDAT; returns (width, height, raw pixel bytes)."""
    if b[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    i, idat, w, h, ctype = 8, b"", None, None, None
    seen_end = False
    while i + 12 <= len(b):
        n, = struct.unpack(">I", b[i:i + 4])
        t = b[i + 4:i + 8]
        body = b[i + 8:i + 8 + n]
        crc, = struct.unpack(">I", b[i + 8 + n:i + 12 + n])
        if zlib.crc32(t + body) & 0xFFFFFFFF != crc:
            raise ValueError("bad CRC in chunk %r" % t)
        if t == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8:
                raise ValueError("bit depth %d" % depth)
        elif t == b"IDAT":
            idat += body
        elif t == b"IEND":
            seen_end = True
            break
        i += 12 + n
    if w is None or not seen_end:
        raise ValueError("missing IHDR or IEND")
    raw = zlib.decompress(idat)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if channels is None or len(raw) != h * (1 + w * channels):
        raise ValueError("pixel data of %d bytes does not match %dx%d (color type %s)" % (len(raw), w, h, ctype))
    return w, h, raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--model", default="dit")
    a = ap.parse_args()
    print("openai client %s against %s" % (openai.__version__, a.base_url))

    # auth: a wrong key is refused with 401
    wrong = openai.OpenAI(base_url=a.base_url, api_key="not-the-key", max_retries=0, timeout=60)
    try:
        wrong.images.generate(model=a.model, prompt="goldfish", size="64x64")
        bad("a wrong API key was accepted")
    except openai.AuthenticationError as e:
        ok("wrong API key refused (%d)" % e.status_code)

    c = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)

    # b64_json, by ImageNet class name, n = 2, ditserve's extras in extra_body
    extras = {"steps": 4, "seed": 7, "cache_config": "none"}
    r = c.images.generate(model=a.model, prompt="goldfish", n=2, size="64x64", response_format="b64_json",
                          extra_body=extras)
    if len(r.data) != 2:
        bad("n=2 gave %d images" % len(r.data))
    pixels = []
    for k, d in enumerate(r.data):
        try:
            w, h, raw = png_info(base64.b64decode(d.b64_json))
            if (w, h) != (64, 64):
                bad("b64_json image %d is %dx%d, asked 64x64" % (k, w, h))
            else:
                ok("b64_json image %d decodes: %dx%d PNG, %d pixel bytes" % (k, w, h, len(raw)))
            pixels.append(raw)
        except (ValueError, TypeError, zlib.error) as e:
            bad("b64_json image %d is not a PNG: %s" % (k, e))
    extra = r.model_extra or {}
    if extra.get("seed") == 7:
        ok("the reply echoes the seed given in extra_body (7)")
    else:
        bad("seed in the reply: %r (asked 7)" % extra.get("seed"))
    if r.created:
        ok("created = %d" % r.created)

    # the same request twice: the same pixels (the seed is honoured)
    again = []
    for _ in range(2):
        r2 = c.images.generate(model=a.model, prompt="goldfish", n=1, size="64x64", response_format="b64_json",
                               extra_body=extras)
        try:
            again.append(png_info(base64.b64decode(r2.data[0].b64_json))[2])
        except (ValueError, TypeError, zlib.error) as e:
            bad("repeat image is not a PNG: %s" % e)
    if len(again) == 2 and again[0] == again[1]:
        ok("the same request twice (n=1, seed 7) gives the same pixels")
    else:
        bad("the same request twice gave different pixels")

    # response_format url: the URL is fetchable with the key, refused without it
    r3 = c.images.generate(model=a.model, prompt="golden retriever", size="64x64", response_format="url",
                           extra_body={"steps": 2})
    url = r3.data[0].url if r3.data else None
    if not url or "/v1/images/" not in url or r3.data[0].b64_json:
        bad("response_format url gave %r" % (r3.data[0] if r3.data else None))
    else:
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + a.api_key})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            ctype = resp.headers.get("Content-Type")
        try:
            w, h, _ = png_info(body)
            ok("url %s fetches a %dx%d PNG (%s, %d bytes)" % (url, w, h, ctype, len(body)))
        except ValueError as e:
            bad("url %s is not a PNG: %s" % (url, e))
        try:
            urllib.request.urlopen(url, timeout=30)
            bad("the image url was served without the API key")
        except urllib.error.HTTPError as e:
            if e.code == 401:
                ok("the image url needs the API key (401 without it)")
            else:
                bad("the image url without the key: %d" % e.code)

    # an unknown class name is a 400 naming the field
    try:
        c.images.generate(model=a.model, prompt="definitely not an imagenet class", size="64x64")
        bad("an unknown class name was accepted")
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        ok("unknown class name refused (%d, param %r: %s)" % (e.status_code, body.get("param"), body.get("message")))

    # an unknown field in extra_body is refused by name, not smuggled anywhere
    try:
        c.images.generate(model=a.model, prompt="goldfish", size="64x64", extra_body={"stepz": 3})
        bad("an unknown extra field was accepted")
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        if body.get("param") == "stepz":
            ok("unknown extra field refused by name (param 'stepz')")
        else:
            bad("unknown extra field: param %r" % body.get("param"))

    print("%s: %d failure(s)" % ("PASS" if failures == 0 else "FAIL", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
