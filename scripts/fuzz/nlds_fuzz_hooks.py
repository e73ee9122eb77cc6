"""schemathesis hooks for scripts/fuzz-api.sh: keep the fuzzer's requests inside a sandbox.

The server under test runs with the CI machine's privileges, so a generated put of "/" would
index the whole machine, and a generated get could restore into any directory. Right before each
request is sent, every path a request names (native "paths", "target", "path"; legacy
"filelist", "target", "filepath") is replaced by one inside $NLDS_FUZZ_SANDBOX: the generated
value picks which one (so different values still differ), strings that are not absolute paths
are left alone (they exercise the validation). Everything else is sent as generated.
"""

import os
import zlib

import schemathesis

SANDBOX = os.environ["NLDS_FUZZ_SANDBOX"]
FILES = sorted(
    os.path.join(SANDBOX, "src", name) for name in os.listdir(os.path.join(SANDBOX, "src"))
)
TARGET = os.path.join(SANDBOX, "target")
PATH_LISTS = ("paths", "filelist")
TARGETS = ("target",)
PATHS = ("path", "filepath")


def _file(value):
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    return FILES[zlib.crc32(value.encode("utf-8", "surrogatepass")) % len(FILES)]


def _target(value):
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    return TARGET


def _sandbox(obj):
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for key in PATH_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_file(v) for v in out[key]]
        elif key in out:
            out[key] = _file(out[key])
    for key in PATHS:
        if key in out:
            out[key] = _file(out[key])
    for key in TARGETS:
        if key in out:
            out[key] = _target(out[key])
    return out


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if isinstance(case.body, dict):
        case.body = _sandbox(case.body)
    if isinstance(case.query, dict):
        case.query = _sandbox(case.query)
