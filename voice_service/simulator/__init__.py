"""The provider simulator: a local Twilio/Vonage for tests, benchmarks and `voice-service simulate`."""

from voice_service.simulator.media import MediaRecord, MediaScript
from voice_service.simulator.server import Scenario, SimCall, Simulator

__all__ = ["MediaRecord", "MediaScript", "Scenario", "SimCall", "Simulator"]
