"""Constrained types shared by the API schemas."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

Name = Annotated[str, Meta(min_length=1, max_length=200)]
ShortText = Annotated[str, Meta(max_length=200)]
Text = Annotated[str, Meta(max_length=2000)]
LongText = Annotated[str, Meta(max_length=20000)]
# Syntax only; numbers are parsed and validated with `phonenumbers` in the services.
E164 = Annotated[str, Meta(pattern=r"^\+[1-9]\d{6,14}$", description="E.164 phone number, e.g. +15551234567")]
Language = Annotated[str, Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35,
                               description="BCP-47 language tag, e.g. en-US")]
