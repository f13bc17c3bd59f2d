#!/usr/bin/python3
"""Outside reference for `longctx op`, used by tests/test_cli.cpp.

    cli_reference.py OP IN.safetensors OUT.safetensors [--backward]

Reads the same input file the CLI reads (with its own safetensors reader, independent of the
library's), computes the op with numpy, and writes for every output NAME two float64 tensors:
NAME, computed in long double (the oracle), and NAME.naive, computed in the inputs' precision
(float32 for f32/bf16/f16 inputs, float64 for f64) — the naive implementation of the 2x rule.
Needs only numpy (Debian's python3-numpy).
"""
import json
import sys

import numpy as np

# ---- safetensors, written from the format description --------------------------------------------

NUMPY_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16,
                "BF16": np.uint16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=np.dtype(NUMPY_DTYPES[info["dtype"]]).newbyteorder("<"))
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (a.reshape(info["shape"]), info["dtype"])
    return tensors, metadata


def write_safetensors(path, arrays):
    header, blobs, offset = {}, [], 0
    for name in sorted(arrays):
        blob = np.ascontiguousarray(arrays[name], dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(np.shape(arrays[name])),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


# ---- ops: each takes (tensors as arrays of type T, options, T, backward) -> {name: array} ----------

def rmsnorm(t, opts, T, backward):
    x, w = t["x"].astype(T), t["weight"].astype(T)
    eps = T(float(opts.get("eps", "1e-6")))
    C = x.shape[-1]
    rstd = T(1) / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) / T(C) + eps)
    if not backward:
        return {"out": x * rstd * w, "rstd": rstd.reshape(-1)}
    dy = t["dout"].astype(T)
    dot = np.sum(dy * w * x, axis=-1, keepdims=True)
    dx = dy * w * rstd - x * dot * rstd ** 3 / T(C)
    dweight = np.sum((dy * x * rstd).reshape(-1, C), axis=0)
    return {"dx": dx, "dweight": dweight}


OPS = {"rmsnorm": rmsnorm}


def main():
    args = [a for a in sys.argv[1:] if a != "--backward"]
    backward = "--backward" in sys.argv[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    op, src, dst = args
    tensors, metadata = read_safetensors(src)
    naive_type = np.float64 if any(dt == "F64" for _, dt in tensors.values()) else np.float32
    arrays = {name: a for name, (a, _) in tensors.items()}
    exact = OPS[op](arrays, metadata, np.longdouble, backward)
    naive = OPS[op](arrays, metadata, naive_type, backward)
    out = {}
    for name in exact:
        out[name] = np.asarray(exact[name], dtype=np.float64)
        out[name + ".naive"] = np.asarray(naive[name], dtype=np.float64)
    write_safetensors(dst, out)


if __name__ == "__main__":
    main()
