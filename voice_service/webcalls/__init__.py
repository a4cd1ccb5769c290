"""Web calls: a browser (or any WebSocket client) talking to an agent, with no carrier in between.

`POST /v1/web-calls` (routes.py) creates the call and a single-use token; the browser opens
`/v1/web-calls/{call_id}/socket` (socket.py) and speaks the JSON + binary protocol of
providers/telephony/web_media.py. The socket runs the same MediaSession and conversation engine as a phone call,
wrapped (events.py) to send the conversation's events and to capture the recording; service.py holds the rules
(who may create one, the wallet, the token, the call's end), origins.py which pages may open a socket, jobs.py
the cancellation of a call whose socket never came. The protocol is documented in docs/web-calls.md.
"""
