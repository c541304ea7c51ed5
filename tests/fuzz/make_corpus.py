#!/usr/bin/env python3
"""make_corpus.py - regenerate the seed corpus in tests/fuzz/corpus/ (plain Python, no deps).

A handful of small valid images (several dtypes, metadata, 0-d and empty tensors, padded header)
and invalid ones (overlap, hole, bad dtype, truncated, overflowing shape, duplicate names)."""
import json, os, struct, sys

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)

def image(header, data=b"", pad=0, raw=None):
    h = (raw if raw is not None else json.dumps(header, separators=(",", ":")).encode()) + b" " * pad
    return struct.pack("<Q", len(h)) + h + data

def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}

seeds = {
    "valid_f32_f16_bf16": image({"__metadata__": {"format": "pt"},
                                 "a.weight": t("F32", [2, 2], 0, 16),
                                 "a.bias": t("F16", [2], 16, 20),
                                 "b": t("BF16", [1, 1, 2], 20, 24)},
                                struct.pack("<4f", 1.0, -2.0, 0.5, 3.0) + struct.pack("<2H", 0x3C00, 0xB800)
                                + struct.pack("<2H", 0x3F80, 0x4049), pad=3),
    "valid_scalar_empty": image({"s": t("F32", [], 0, 4), "e": t("F16", [0, 3], 4, 4),
                                 "u": t("U8", [3], 4, 7)}, struct.pack("<f", 2.5) + b"\x01\x02\x03"),
    "valid_all_int": image({"i64": t("I64", [1], 0, 8), "i32": t("I32", [1], 8, 12), "i16": t("I16", [1], 12, 14),
                            "i8": t("I8", [1], 14, 15), "bool": t("BOOL", [1], 15, 16),
                            "f8": t("F8_E4M3", [2], 16, 18), "f8b": t("F8_E5M2", [2], 18, 20),
                            "f64": t("F64", [1], 20, 28), "u64": t("U64", [1], 28, 36),
                            "u32": t("U32", [1], 36, 40), "u16": t("U16", [1], 40, 42)}, bytes(range(42))),
    "valid_meta_only": image({"__metadata__": {"a": "b", "c": ""}}, pad=8),
    "bad_overlap": image({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)),
    "bad_hole": image({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)),
    "bad_dtype": image({"a": t("F17", [1], 0, 4)}, bytes(4)),
    "bad_overflow": image({"a": t("F32", [2**40, 2**40, 2**40], 0, 4)}, bytes(4)),
    "bad_duplicate": image(None, bytes(8), raw=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                               b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'),
    "bad_truncated": image({"a": t("F32", [4], 0, 16)}, bytes(9)),
    "bad_hdrlen": struct.pack("<Q", 1 << 40) + b"{}",
    "bad_json": image(None, b"", raw=b'{"a":{"dtype":"F32","shape":[1,'),
}
for name, blob in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)
print(f"wrote {len(seeds)} seeds to {out}", file=sys.stderr)
