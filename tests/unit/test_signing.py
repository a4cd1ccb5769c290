"""Outgoing webhook signatures must verify with the reference Standard Webhooks library."""

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from voice_service.events import signing


def test_generated_secret_format() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert signing.generate_secret() != secret


def test_headers_verify_with_standardwebhooks() -> None:
    secret = signing.generate_secret()
    body = json.dumps({"type": "call.ended", "data": {"call_id": "c1", "cost": "0.012345"}}).encode()
    ts = int(time.time())
    hdrs = signing.headers(secret, "msg_2b1", ts, body)
    assert set(hdrs) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert hdrs["webhook-timestamp"] == str(ts)
    assert Webhook(secret).verify(body, hdrs) == {
        "type": "call.ended",
        "data": {"call_id": "c1", "cost": "0.012345"},
    }


def test_tampered_body_or_other_secret_fails() -> None:
    secret = signing.generate_secret()
    body = b'{"a":1}'
    hdrs = signing.headers(secret, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', hdrs)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, hdrs)


def test_known_answer_from_the_spec() -> None:
    # Example from the Standard Webhooks specification / reference library tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
