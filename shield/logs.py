"""Structured logs: one JSON object a line on stderr."""

import json
import logging
import math
import sys
import time

logger = logging.getLogger("shield")
_encode_str = json.encoder.encode_basestring_ascii
_faults_seen = set()


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def configure(level="info"):
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def event(name, level=logging.INFO, **fields):
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def request(method, path, status, cache, sent, ms):
    """The line of one answered request, written straight to the JSON handler's stream.

    The same line `event("request", ...)` writes, without building a LogRecord and
    going through the logging machinery (nor a loop over the fields) for every request.
    """
    handler = _plain_handler()
    if handler is None:
        event("request", method=method, path=path, status=status, cache=cache or None, bytes=sent, ms=ms)
        return
    _write(
        handler,
        f'{{"ts":{round(time.time(), 3)!r},"level":"info","event":"request",'
        f'"method":{_encode_str(method)},"path":{_encode_str(path)},"status":{status:d},'
        f'"cache":{_encode_str(cache) if cache else "null"},"bytes":{sent:d},"ms":{_json_value(ms)}}}'
        f"{handler.terminator}",
    )


def _plain_handler():
    """The one JSON StreamHandler when INFO goes only there (lines may skip logging's machinery)."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    handlers = logger.handlers
    if (
        len(handlers) != 1
        or type(handlers[0]) is not logging.StreamHandler
        or type(handlers[0].formatter) is not JsonFormatter
    ):
        return None
    return handlers[0]


def _write(handler, text):
    with handler.lock:
        try:
            handler.stream.write(text)
            handler.stream.flush()
        except (OSError, ValueError):  # a full pipe, a closed stream: the request goes on
            pass


def _json_value(value):
    """One value as json.dumps(default=str) writes it, for the common types without its machinery."""
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is int or kind is float:
        return json.dumps(value) if kind is float and not math.isfinite(value) else repr(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return json.dumps(value, default=str, separators=(",", ":"))


def fault_once(name, **fields):
    """Log a fault the first time it happens in this process; repeats are counted, not logged."""
    if name in _faults_seen:
        return
    _faults_seen.add(name)
    event(name, logging.WARNING, first_seen=time.time(), **fields)


def reset_faults():
    _faults_seen.clear()
