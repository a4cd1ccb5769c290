"""What a lead import request carries, however it is sent: a raw body (text/csv or application/json), or a browser
upload (multipart/form-data with the file in a `file` field); and the import options, from the query string or
the form's other fields (`mapping`: a JSON object, `default_country`: ISO 3166 alpha-2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import phonenumbers
from litestar import Request
from litestar.datastructures import UploadFile

from voice_service.errors import BadRequest, ValidationFailed
from voice_service.leads.columns import check_mapping
from voice_service.leads.importer import CSV_TYPES, JSON_TYPES, ImportOptions

__all__ = ["Upload", "read_upload"]

_EXTENSIONS = {".csv": "text/csv", ".tsv": "text/csv", ".txt": "text/csv", ".json": "application/json"}
_mapping_decoder = msgspec.json.Decoder(dict[str, str | None])


@dataclass(frozen=True)
class Upload:
    media_type: str
    options: dict[str, str]  # content-type parameters (charset)
    body: bytes
    how: ImportOptions


async def read_upload(
    request: Request[Any, Any, Any], mapping: str | None, default_country: str | None
) -> Upload:
    media_type, options = request.content_type
    if media_type != "multipart/form-data":
        return Upload(media_type, options, await request.body(), import_options(mapping, default_country))
    form = await request.form()
    files = [(name, value) for name, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise BadRequest("the upload has no file: send the CSV or JSON file in a `file` field", field="file")
    upload = next((value for name, value in files if name == "file"), files[0][1])
    fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    part_type, part_options = _part_type(upload)
    return Upload(
        part_type,
        part_options,
        await upload.read(),
        import_options(fields.get("mapping", mapping), fields.get("default_country", default_country)),
    )


def _part_type(upload: UploadFile) -> tuple[str, dict[str, str]]:
    """The file's type: its part's content type when that is CSV or JSON, else its name's extension (browsers
    send `application/vnd.ms-excel` or `application/octet-stream` for .csv files), else CSV."""
    declared, _, params = (upload.content_type or "").partition(";")
    declared = declared.strip().lower()
    options = {}
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip():
            options[key.strip().lower()] = value.strip().strip('"')
    if declared in CSV_TYPES or declared in JSON_TYPES:
        return declared, options
    name = (upload.filename or "").lower()
    extension = name[name.rfind("."):] if "." in name else ""
    return _EXTENSIONS.get(extension, "text/csv"), options


def import_options(mapping: str | None, default_country: str | None) -> ImportOptions:
    checked: dict[str, str] | None = None
    if mapping:
        try:
            checked = check_mapping(_mapping_decoder.decode(mapping))
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise BadRequest(
                '`mapping` must be a JSON object from column names to lead fields, e.g. {"Tel": "phone", '
                '"Notes 2": null}',
                field="mapping",
            ) from None
    country = None
    if default_country:
        country = default_country.strip().upper()
        if country not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationFailed(
                f"`default_country` {default_country!r} is not a country code phone numbers know; give an "
                f"ISO 3166 two-letter code such as US, GB or DE",
                field="default_country",
            )
    return ImportOptions(mapping=checked, default_country=country)
