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


def line(name, **fields):
    """An INFO event written straight to the JSON handlers' streams.

    The request log's path: the same line `event` writes, without building a
    LogRecord and going through the logging machinery for every request.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = logger.handlers
    if (
        len(handlers) != 1
        or type(handlers[0]) is not logging.StreamHandler
        or type(handlers[0].formatter) is not JsonFormatter
    ):
        event(name, **fields)
        return
    handler = handlers[0]
    parts = [f'{{"ts":{round(time.time(), 3)!r},"level":"info","event":{_json_value(name)}']
    for key, value in fields.items():
        parts.append(f",{_json_value(key)}:{_json_value(value)}")
    parts.append("}" + handler.terminator)
    text = "".join(parts)
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
