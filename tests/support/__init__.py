"""Helpers the tests share (no tests here; pytest collects nothing from this package).

One module per concern: `database` (per-test databases), `tenants`, `batches`, `pipeline` (call rows, job
workers), `recordings`, `browser` (Chromium and axe for the console), `calls`, `conversation` (the whole-call
conversation stack), `engine` (the engine on an in-memory phone line), `analysis`, `webhooks`. The fake provider
servers (Deepgram, OpenAI, TTS, a carrier) are in `tests/fakes/`. Fixtures are not defined here: they live in the
conftest.py files (see tests/README.md).
"""
