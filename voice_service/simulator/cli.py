"""`voice-service simulate`: play the provider's side of calls against a running service.

voice-service simulate serve [--port 8765] [--answer answer|busy|no-answer|failed|machine] ...
    A local Twilio + Vonage: numbers with provider `simulator` (or TWILIO_BASE_URL / VONAGE_BASE_URL
    pointed here) place their calls against it; each call is answered per the options and printed.
voice-service simulate call --to +15551230001 [--provider twilio|vonage] [--wav caller.wav] ...
    One inbound call to the service (PUBLIC_BASE_URL, or --service-url) through its voice/answer webhook;
    prints what happened as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

import msgspec

from voice_service.settings import Settings
from voice_service.simulator.server import Scenario, SimCall, Simulator


def _scenario(args: argparse.Namespace) -> Scenario:
    return Scenario(
        answer=args.answer,
        ring_seconds=args.ring_seconds,
        talk_seconds=args.talk_seconds,
        wav=args.wav,
        speed=args.speed,
        hangup_after=None if args.wait_for_hangup else args.hangup_after,
    )


def summary(call: SimCall) -> dict[str, Any]:
    media = call.media
    return {
        "provider": call.provider,
        "direction": call.direction,
        "id": call.id,
        "to": call.to,
        "from": call.from_,
        "statuses": call.statuses,
        "webhook_statuses": call.webhook_statuses,
        "duration": call.duration,
        "answer_status": call.answer_status,
        "rejected_message": call.rejected_message,
        "call_id": call.custom_parameters.get("call_id"),
        "error": call.error,
        "media": {
            "connected": media.connected,
            "frames_sent": media.frames_sent,
            "seconds_received": round(media.received_seconds, 3),
            "marks_received": media.marks_received,
            "marks_echoed": media.marks_echoed,
            "clears": media.clears,
            "ended_by": media.ended_by,
            "close_code": media.close_code,
            "protocol_violations": media.other_messages[:5],
            "error": media.error,
        },
    }


def _print(call: SimCall) -> None:
    print(msgspec.json.encode(summary(call)).decode(), flush=True)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        sim = Simulator.from_settings(
            settings,
            service_url=args.service_url or settings.public_base_url,
            host=args.host,
            port=args.port,
            default_scenario=_scenario(args),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with sim:
            print(
                f"simulator listening on {sim.base_url} (Twilio REST and Vonage REST); Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            printed: set[str] = set()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                for call in list(sim.calls.values()):
                    if call.done.is_set() and call.id not in printed:
                        printed.add(call.id)
                        _print(call)
        return 0

    return asyncio.run(run())


def _call(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        async with Simulator.from_settings(
            settings, service_url=args.service_url or settings.public_base_url, host=args.host
        ) as sim:
            account = (
                settings.simulator_account_sid if args.account == "simulator" else settings.twilio_account_sid
            )
            call = await sim.inbound_call(
                args.provider,
                to=args.to,
                from_=args.from_,
                scenario=_scenario(args),
                account_sid=account,
                timeout=args.timeout,
            )
            _print(call)
            return 0 if call.error is None and call.answer_status == 200 else 1

    return asyncio.run(run())


def _add_scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--answer", default="answer", choices=["answer", "busy", "no-answer", "failed", "machine"],
                   help="how the callee answers")
    p.add_argument("--ring-seconds", type=float, default=0.5, help="ringing before the answer")
    p.add_argument("--talk-seconds", type=float, default=3.0, help="generated caller speech (without --wav)")
    p.add_argument("--wav", help="16-bit PCM WAV file to stream as the caller")
    p.add_argument("--speed", type=float, default=1.0, help="1.0 = real time")
    p.add_argument(
        "--hangup-after", type=float, default=2.0, help="seconds of listening after the caller's audio"
    )
    p.add_argument(
        "--wait-for-hangup", action="store_true", help="stay on the line until the service hangs up"
    )
    p.add_argument("--service-url", help="the service's public URL (default PUBLIC_BASE_URL)")
    p.add_argument("--host", default="127.0.0.1", help="address the simulator listens on")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    formatter = parser.formatter_class
    if not (isinstance(formatter, type) and issubclass(formatter, argparse.RawDescriptionHelpFormatter)):
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="simulate_command", required=True)
    fmt = parser.formatter_class
    p = sub.add_parser("serve", help="run a local Twilio + Vonage that answers the service's calls",
                       formatter_class=fmt)
    _add_scenario_args(p)
    p.add_argument("--port", type=int, default=8765, help="port the simulator listens on (SIMULATOR_BASE_URL)")
    p.set_defaults(simulate=_serve)
    p = sub.add_parser("call", help="place one inbound call to the service", formatter_class=fmt)
    _add_scenario_args(p)
    p.add_argument("--provider", default="twilio", choices=["twilio", "vonage"], help="whose wire format")
    p.add_argument(
        "--account",
        default="simulator",
        choices=["simulator", "twilio"],
        help="Twilio-format calls: whose account (and auth token) signs them",
    )
    p.add_argument("--to", required=True, help="one of the service's numbers (E.164)")
    p.add_argument("--from", dest="from_", default="+14155550100", help="the caller's number (E.164)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the call to end")
    p.set_defaults(simulate=_call)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return int(args.simulate(args, settings))
