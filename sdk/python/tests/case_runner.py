"""The runner of sdk/cases.json, following its "format" array:

- every key and scan/watch prefix sent gets '<run>-<case number>:' in front, and every key read
  back loses it;
- '$name' / '$name.a.0.b' in args and expect are saved results (or paths into them);
- expect.result: objects match field by field (extra fields allowed), arrays element by element
  with the same length, scalars by equality; '<any>' is anything but null or absence;
  {'$gt': X} a decimal string or number above X;
- expect.error: the typed error class, and its code and status when given.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote

import cairn_client
from cairn_client import CairnError, Client

_ABSENT = object()

# The cases' option names (camelCase, as in sdk/README.md) onto this client's keywords.
PUT_OPTIONS = {"ttl": "ttl", "ifVersion": "if_version", "ifAbsent": "if_absent", "ifValue": "if_value"}
DELETE_OPTIONS = {"ifVersion": "if_version"}
SCAN_OPTIONS = {"limit": "limit", "values": "values"}

WATCH_MAX_SECONDS = 10.0


class CaseFailure(AssertionError):
    pass


def resolve(value: Any, saved: Mapping[str, Any]) -> Any:
    """Replaces every string '$name' or '$name.path' with the saved result it names."""
    if isinstance(value, str) and value.startswith("$") and len(value) > 1:
        name, *path = value[1:].split(".")
        if name not in saved:
            raise CaseFailure(f"{value}: nothing was saved under {name!r}")
        cur = saved[name]
        for part in path:
            if isinstance(cur, list):
                cur = cur[int(part)]
            elif isinstance(cur, dict):
                cur = cur[part]
            else:
                raise CaseFailure(f"{value}: cannot take {part!r} of {cur!r}")
        return cur
    if isinstance(value, dict):
        return {k: resolve(v, saved) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, saved) for v in value]
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _decimal(v: Any) -> Optional[Decimal]:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        return None
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def match(actual: Any, expected: Any, path: str = "result") -> Optional[str]:
    """None when `actual` matches `expected`, else why not."""
    if expected == "<any>":
        if actual is _ABSENT or actual is None:
            return f"{path}: expected a value, got {'nothing' if actual is _ABSENT else 'null'}"
        return None
    if isinstance(expected, dict) and set(expected) == {"$gt"}:
        a, b = _decimal(actual), _decimal(expected["$gt"])
        if a is None or b is None:
            return f"{path}: {actual!r} and {expected['$gt']!r} must both be decimal numbers"
        return None if a > b else f"{path}: {actual!r} is not greater than {expected['$gt']!r}"
    if actual is _ABSENT:
        return f"{path}: absent, expected {expected!r}"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for k, v in expected.items():
            why = match(actual.get(k, _ABSENT), v, f"{path}.{k}")
            if why:
                return why
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected an array, got {actual!r}"
        if len(actual) != len(expected):
            return f"{path}: expected {len(expected)} elements, got {len(actual)}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            why = match(a, e, f"{path}[{i}]")
            if why:
                return why
        return None
    # Scalars. JSON's types are kept apart: true is not 1, and 1 is not "1".
    if expected is None or isinstance(expected, bool) or isinstance(expected, str):
        same = type(actual) is type(expected) and actual == expected
    elif _is_number(expected):
        same = _is_number(actual) and actual == expected
    else:
        same = actual == expected
    return None if same else f"{path}: expected {expected!r}, got {actual!r}"


def strip_keys(value: Any, prefix: str) -> Any:
    """Removes the case prefix from every "key" field in a result."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "key" and isinstance(v, str) and v.startswith(prefix):
                out[k] = v[len(prefix):]
            else:
                out[k] = strip_keys(v, prefix)
        return out
    if isinstance(value, list):
        return [strip_keys(v, prefix) for v in value]
    return value


def _options(options: Optional[Mapping[str, Any]], names: Mapping[str, str], call: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in (options or {}).items():
        if k not in names:
            raise CaseFailure(f"{call}: unknown option {k!r}")
        out[names[k]] = v
    return out


def perform(client: Client, call: str, args: Mapping[str, Any], prefix: str) -> Any:
    """Runs one step's call; returns its result in the JSON shape, prefix stripped."""
    if call == "get":
        item = client.get(prefix + args["key"])
        result: Any = None if item is None else item.to_dict()
    elif call == "put":
        opts = _options(args.get("options"), PUT_OPTIONS, call)
        result = client.put(prefix + args["key"], args["value"], **opts).to_dict()
    elif call == "delete":
        opts = _options(args.get("options"), DELETE_OPTIONS, call)
        result = client.delete(prefix + args["key"], **opts)
    elif call == "increment":
        if "delta" in args:
            result = client.increment(prefix + args["key"], args["delta"]).to_dict()
        else:
            result = client.increment(prefix + args["key"]).to_dict()
    elif call == "scan":
        opts = _options(args.get("options"), SCAN_OPTIONS, call)
        result = [i.to_dict() for i in client.scan(prefix + args["prefix"], **opts)]
    elif call == "batch":
        ops = [dict(op, key=prefix + op["key"]) for op in args["ops"]]
        result = [r.to_dict() for r in client.batch(ops)]
    elif call == "watch":
        result = _watch(client, prefix + args.get("prefix", ""), args.get("after"), int(args["count"]))
    elif call == "raw":
        path = "/kv/items/" + quote(prefix + args["key"], safe="") + args.get("suffix", "")
        resp = client.request(args["method"], path, headers=args.get("headers"), body=args.get("body"))
        result = resp.to_dict()
    elif call == "sleep":
        time.sleep(args["ms"] / 1000.0)
        result = None
    else:
        raise CaseFailure(f"unknown call {call!r}")
    return strip_keys(result, prefix)


def _watch(client: Client, prefix: str, after: Any, count: int) -> List[Dict[str, Any]]:
    """The first `count` change events, for WATCH_MAX_SECONDS at most: after that the watch is
    closed from a timer thread, which ends the iteration with what was collected."""
    events: List[Dict[str, Any]] = []
    watch = client.watch(prefix, after=after)
    timer = threading.Timer(WATCH_MAX_SECONDS, watch.close)
    timer.start()
    try:
        for ev in watch:
            events.append(ev.to_dict())
            if len(events) >= count:
                break
    finally:
        timer.cancel()
        watch.close()
    return events


def run_case(case: Mapping[str, Any], number: int, run: str, clients: Mapping[str, Client]) -> None:
    prefix = f"{run}-{number}:"
    saved: Dict[str, Any] = {}
    case_client = case.get("client", "default")
    for n, step in enumerate(case["steps"], start=1):
        call = step["call"]
        where = f"step {n} ({call})"
        client = clients[step.get("client", case_client)]
        args = resolve(step.get("args", {}), saved)
        expect = step.get("expect") or {}
        error: Optional[CairnError] = None
        result: Any = None
        try:
            result = perform(client, call, args, prefix)
        except CairnError as e:
            error = e
        # Saved before the expectation is resolved: a step's expect may name its own result
        # ('$b.0.version' in the batch case compares op 1's version with op 0's).
        if "save" in step and error is None:
            saved[step["save"]] = result
        if "error" in expect:
            cls = getattr(cairn_client, expect["error"], None)
            if cls is None or not (isinstance(cls, type) and issubclass(cls, CairnError)):
                raise CaseFailure(f"{where}: unknown error class {expect['error']!r}")
            if error is None:
                raise CaseFailure(f"{where}: expected {expect['error']}, but it succeeded with {result!r}")
            if not isinstance(error, cls):
                raise CaseFailure(f"{where}: expected {expect['error']}, got {error!r}")
            if "code" in expect and error.code != expect["code"]:
                raise CaseFailure(f"{where}: expected code {expect['code']!r}, got {error!r}")
            if "status" in expect and error.status != expect["status"]:
                raise CaseFailure(f"{where}: expected status {expect['status']!r}, got {error!r}")
        else:
            if error is not None:
                raise CaseFailure(f"{where}: failed: {error!r} ({error})")
            if "result" in expect:
                why = match(result, resolve(expect["result"], saved))
                if why:
                    raise CaseFailure(f"{where}: {why}")
