"""Log lines are JSON with request/tenant/call context, and never carry an API key or bearer token."""

from __future__ import annotations

import json
import logging

from voice_service.observability import JsonFormatter, call_id_var, request_id_var, tenant_id_var


def test_json_log_line_has_context_and_no_secrets() -> None:
    tokens = [request_id_var.set("req-1"), tenant_id_var.set("t-1"), call_id_var.set("c-1")]
    try:
        record = logging.makeLogRecord({
            "name": "voice_service.test", "levelno": logging.WARNING, "levelname": "WARNING",
            "msg": "auth header was Bearer %s", "args": ("vsk_SECRETSECRETSECRET",),
            "key": "vsk_ANOTHERSECRETKEY", "status": 401,
        })
        line = json.loads(JsonFormatter().format(record))
    finally:
        call_id_var.reset(tokens[2])
        tenant_id_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
    assert line["request_id"] == "req-1" and line["tenant_id"] == "t-1" and line["call_id"] == "c-1"
    assert line["level"] == "warning" and line["status"] == 401
    text = json.dumps(line)
    assert "SECRETSECRET" not in text and "ANOTHERSECRET" not in text
